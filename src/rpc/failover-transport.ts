import type { DescMessage, DescMethodStreaming, DescMethodUnary, MessageInitShape } from "@bufbuild/protobuf";
import { Code, ConnectError, type ContextValues, type Transport } from "@connectrpc/connect";
import { formatHostPort, type HostPort, parseHostPort } from "../base/address.ts";
import { CorralError } from "../base/errors.ts";

/** Request headers as Connect takes them (the DOM's HeadersInit). */
type Header = Parameters<Transport["unary"]>[3];

/** Parses `a,b,c` (each `host:port` or `http(s)://host:port`) into a non-empty, de-duplicated list. */
export function parseAddressList(input: string, field: string): HostPort[] {
  const seen = new Set<string>();
  const list: HostPort[] = [];
  for (const part of input.split(",")) {
    if (part.trim() === "") continue;
    const address = parseHostPort(part, field);
    const key = formatHostPort(address);
    if (seen.has(key)) continue;
    seen.add(key);
    list.push(address);
  }
  if (list.length === 0)
    throw CorralError.invalidArgument(field, "names no address; write host:port[,host:port…]");
  return list;
}

/** Errors that show the call never reached a server: safe to send again elsewhere, whatever the method. */
const neverConnected =
  /ECONNREFUSED|ENOTFOUND|EHOSTUNREACH|ENETUNREACH|EADDRNOTAVAIL|No connection established|connect ETIMEDOUT|Failed to connect/i;

function describe(error: ConnectError): string {
  const cause = error.cause as { code?: unknown; message?: unknown } | undefined;
  return `${error.rawMessage} ${String(cause?.code ?? "")} ${String(cause?.message ?? "")}`;
}

/**
 * Reads (by name) are safe to repeat on another controller even when the first may have seen them.
 * A write that may have reached a controller is not repeated: its outcome is the caller's to check.
 */
const readMethod = /^(Get|List|Watch|Stream|Sync|Describe|Check|Ping|get|list|watch|stream)/;

export interface FailoverTransportOptions {
  /** One transport per controller, in the order given by the operator. */
  readonly targets: readonly { readonly address: string; readonly transport: Transport }[];
  /** Methods (by name) that may be sent again after an UNAVAILABLE that may have reached a server. */
  readonly idempotent?: (methodName: string) => boolean;
  /** Told whenever calls move to another controller. */
  readonly onFailover?: (from: string, to: string, error: ConnectError) => void;
}

/**
 * A Connect transport over several controllers: calls go to the preferred one, and when it cannot be
 * reached (UNAVAILABLE) they go to the next, once each, in order; the one that answers becomes the
 * preferred one. Unary calls and the opening of server streams fail over; client and bidi streams go
 * to the preferred controller only (their input cannot be sent twice). Backoff between rounds is the
 * caller's: a call that every controller refused fails with the last error.
 */
export class FailoverTransport implements Transport {
  readonly #o: FailoverTransportOptions;
  #preferred = 0;

  constructor(options: FailoverTransportOptions) {
    if (options.targets.length === 0) throw new Error("FailoverTransport needs at least one target");
    this.#o = options;
  }

  /** The controller calls go to now. */
  get current(): string {
    return this.#target(this.#preferred).address;
  }

  get addresses(): string[] {
    return this.#o.targets.map((t) => t.address);
  }

  /** Moves on to the next controller (e.g. after a deadline passed without an answer). */
  rotate(): void {
    this.#preferred = (this.#preferred + 1) % this.#o.targets.length;
  }

  /** Moves to a controller picked at random, so that agents spread over the controllers over time. */
  spread(random: () => number = Math.random): void {
    this.#preferred = Math.floor(random() * this.#o.targets.length) % this.#o.targets.length;
  }

  unary<I extends DescMessage, O extends DescMessage>(
    method: DescMethodUnary<I, O>,
    signal: AbortSignal | undefined,
    timeoutMs: number | undefined,
    header: Header,
    input: MessageInitShape<I>,
    contextValues?: ContextValues,
  ) {
    return this.#attempt(method.name, (t) =>
      t.unary(method, signal, timeoutMs, header, input, contextValues),
    );
  }

  async stream<I extends DescMessage, O extends DescMessage>(
    method: DescMethodStreaming<I, O>,
    signal: AbortSignal | undefined,
    timeoutMs: number | undefined,
    header: Header,
    input: AsyncIterable<MessageInitShape<I>>,
    contextValues?: ContextValues,
  ) {
    if (method.methodKind !== "server_streaming" || this.#o.targets.length === 1)
      return this.#target(this.#preferred).transport.stream(
        method,
        signal,
        timeoutMs,
        header,
        input,
        contextValues,
      );
    // A server stream's input is one message: keep it, so it can be sent to the next controller.
    const messages: MessageInitShape<I>[] = [];
    for await (const message of input) messages.push(message);
    return this.#attempt(method.name, (t) =>
      t.stream(method, signal, timeoutMs, header, replay(messages), contextValues),
    );
  }

  async #attempt<T>(methodName: string, call: (transport: Transport) => Promise<T>): Promise<T> {
    const count = this.#o.targets.length;
    const start = this.#preferred;
    let lastError: unknown;
    for (let i = 0; i < count; i++) {
      const index = (start + i) % count;
      try {
        const result = await call(this.#target(index).transport);
        this.#preferred = index;
        return result;
      } catch (error) {
        lastError = error;
        if (!(error instanceof ConnectError) || error.code !== Code.Unavailable) throw error;
        const safe = neverConnected.test(describe(error)) || this.#idempotent(methodName);
        if (!safe || i === count - 1) throw error;
        const next = (index + 1) % count;
        this.#preferred = next;
        this.#o.onFailover?.(this.#target(index).address, this.#target(next).address, error);
      }
    }
    throw lastError;
  }

  #idempotent(methodName: string): boolean {
    return this.#o.idempotent?.(methodName) ?? readMethod.test(methodName);
  }

  #target(index: number) {
    const target = this.#o.targets[index];
    if (target === undefined) throw new Error(`no target ${index}`);
    return target;
  }
}

async function* replay<T>(messages: readonly T[]): AsyncIterable<T> {
  yield* messages;
}
