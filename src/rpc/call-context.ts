import type { DescMethod, DescService } from "@bufbuild/protobuf";
import { type ContextValues, createContextValues, type HandlerContext } from "@connectrpc/connect";
import { type Deadline, Metadata, type ServerUnaryCall } from "@grpc/grpc-js";

type AuthContext = ReturnType<ServerUnaryCall<unknown, unknown>["getAuthContext"]>;

/** What every grpc-js server call has in common (grpc-js does not export its own name for it). */
export interface ServerSurfaceCall {
  readonly metadata: Metadata;
  readonly cancelled: boolean;
  getPeer(): string;
  getDeadline(): Deadline;
  getPath(): string;
  getHost(): string;
  getAuthContext(): AuthContext;
  once(event: "cancelled", listener: () => void): unknown;
}

import { CorralError } from "../core/errors.ts";

/**
 * A Connect HandlerContext for a call that arrived through grpc-js, so one ServiceImpl serves both
 * transports. Headers are converted only when a handler asks for them: most calls never do, and
 * building a Headers object per call is a measurable part of a small unary call's cost.
 */
export class GrpcHandlerContext implements HandlerContext {
  readonly method: DescMethod;
  readonly service: DescService;
  readonly protocolName = "grpc";
  readonly requestMethod = "POST";
  readonly values: ContextValues;
  readonly #call: ServerSurfaceCall;
  readonly #controller = new AbortController();
  readonly #deadline: number | undefined;
  #deadlineTimer: NodeJS.Timeout | undefined;
  #requestHeader: Headers | undefined;
  #responseHeader: Headers | undefined;
  #responseTrailer: Headers | undefined;

  constructor(call: ServerSurfaceCall, method: DescMethod, values?: ContextValues) {
    this.#call = call;
    this.method = method;
    this.service = method.parent;
    this.values = values ?? createContextValues();
    const deadline = call.getDeadline();
    const deadlineMs = deadline instanceof Date ? deadline.getTime() : deadline;
    if (Number.isFinite(deadlineMs)) {
      this.#deadline = deadlineMs;
      const remaining = Math.max(0, deadlineMs - Date.now());
      this.#deadlineTimer = setTimeout(
        () => this.abort(new CorralError("DEADLINE_EXCEEDED", "the call's deadline passed")),
        remaining,
      );
      this.#deadlineTimer.unref();
    }
    call.once("cancelled", () => this.abort(new CorralError("CANCELLED", "the client cancelled the call")));
  }

  get signal(): AbortSignal {
    return this.#controller.signal;
  }

  get url(): string {
    return `grpc://${this.#call.getHost()}${this.#call.getPath()}`;
  }

  /** The peer's address as grpc-js reports it (`ipv4:127.0.0.1:5555`). */
  get peer(): string {
    return this.#call.getPeer();
  }

  get call(): ServerSurfaceCall {
    return this.#call;
  }

  timeoutMs = (): number | undefined =>
    this.#deadline === undefined ? undefined : this.#deadline - Date.now();

  get requestHeader(): Headers {
    this.#requestHeader ??= metadataToHeaders(this.#call.metadata);
    return this.#requestHeader;
  }

  get responseHeader(): Headers {
    this.#responseHeader ??= new Headers();
    return this.#responseHeader;
  }

  get responseTrailer(): Headers {
    this.#responseTrailer ??= new Headers();
    return this.#responseTrailer;
  }

  /** Response headers set by the handler, as grpc-js metadata; empty when none were set. */
  takeResponseMetadata(): Metadata {
    return headersToMetadata(this.#responseHeader);
  }

  takeTrailerMetadata(): Metadata {
    return headersToMetadata(this.#responseTrailer);
  }

  abort(reason?: unknown): void {
    this.dispose();
    if (!this.#controller.signal.aborted) this.#controller.abort(reason);
  }

  dispose(): void {
    if (this.#deadlineTimer !== undefined) {
      clearTimeout(this.#deadlineTimer);
      this.#deadlineTimer = undefined;
    }
  }
}

function metadataToHeaders(metadata: Metadata): Headers {
  const headers = new Headers();
  for (const [key, values] of Object.entries(metadata.getMap())) {
    if (key.endsWith("-bin")) continue;
    headers.append(key, String(values));
  }
  return headers;
}

function headersToMetadata(headers: Headers | undefined): Metadata {
  const metadata = new Metadata();
  headers?.forEach((value, key) => {
    metadata.add(key, value);
  });
  return metadata;
}
