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

import { CorralError } from "../base/errors.ts";

/**
 * A Connect HandlerContext for a call that arrived through grpc-js, so one ServiceImpl serves both
 * transports. Everything a handler may never look at is made on first use: most calls never read
 * headers, values or the signal, and a small unary call is cheap enough that building them shows.
 * A signal asked for late reports what happened before (the call cancelled or ended, the deadline
 * passed, abort() called).
 */
export class GrpcHandlerContext implements HandlerContext {
  readonly method: DescMethod;
  readonly service: DescService;
  readonly protocolName = "grpc";
  readonly requestMethod = "POST";
  readonly #call: ServerSurfaceCall;
  #values: ContextValues | undefined;
  #controller: AbortController | undefined;
  #disposed = false;
  #deadlineTimer: NodeJS.Timeout | undefined;
  #requestHeader: Headers | undefined;
  #responseHeader: Headers | undefined;
  #responseTrailer: Headers | undefined;

  constructor(call: ServerSurfaceCall, method: DescMethod, values?: ContextValues) {
    this.#call = call;
    this.method = method;
    this.service = method.parent;
    this.#values = values;
  }

  get values(): ContextValues {
    this.#values ??= createContextValues();
    return this.#values;
  }

  get signal(): AbortSignal {
    if (this.#controller === undefined) {
      const controller = new AbortController();
      this.#controller = controller;
      const deadline = this.#deadline();
      if (this.#call.cancelled) this.#abortWith(cancelled);
      else if (deadline !== undefined && deadline <= Date.now()) this.#abortWith(deadlineExceeded);
      else {
        this.#call.once("cancelled", () => this.#abortWith(cancelled));
        if (deadline !== undefined && !this.#disposed) {
          this.#deadlineTimer = setTimeout(() => this.#abortWith(deadlineExceeded), deadline - Date.now());
          this.#deadlineTimer.unref();
        }
      }
    }
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

  timeoutMs = (): number | undefined => {
    const deadline = this.#deadline();
    return deadline === undefined ? undefined : deadline - Date.now();
  };

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
    this.#abortWith(() => reason);
  }

  dispose(): void {
    this.#disposed = true;
    if (this.#deadlineTimer !== undefined) {
      clearTimeout(this.#deadlineTimer);
      this.#deadlineTimer = undefined;
    }
  }

  /** Aborts the signal (made now if need be) unless it is aborted already; `reason` is made only then. */
  #abortWith(reason: () => unknown): void {
    this.dispose();
    const signal = this.signal;
    if (!signal.aborted) this.#controller?.abort(reason());
  }

  /** The call's deadline in ms since the epoch; undefined when it has none. */
  #deadline(): number | undefined {
    const deadline = this.#call.getDeadline();
    const deadlineMs = deadline instanceof Date ? deadline.getTime() : deadline;
    return Number.isFinite(deadlineMs) ? deadlineMs : undefined;
  }
}

const cancelled = () => new CorralError("CANCELLED", "the client cancelled the call");
const deadlineExceeded = () => new CorralError("DEADLINE_EXCEEDED", "the call's deadline passed");

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
