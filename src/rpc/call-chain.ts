import { createContextKey, type HandlerContext } from "@connectrpc/connect";

/**
 * A call as every listener's interceptors see it, whatever carried it (grpc-js on the cluster listener
 * and the bridge, Connect on the web listener): the handler's context and who is on the other end.
 */
export interface CallContext extends HandlerContext {
  /** The caller's address (`ipv4:127.0.0.1:5555` from grpc-js, `127.0.0.1:5555` from the web listener). */
  readonly peer: string;
}

/**
 * Runs around a whole call (for a stream: until its last message is written). It may throw before
 * calling `next` to refuse the call (authorization), or observe the outcome (logging, metrics).
 */
export type ChainInterceptor = (ctx: CallContext, next: () => Promise<void>) => Promise<void>;

/** The peer of a call on the web listener, put in by its HTTP server (Connect's context has no peer of its own). */
export const peerKey = createContextKey<string>("", { description: "the caller's address" });

/** Runs `run` inside the interceptors, the first outermost. */
export function runChain<C extends CallContext>(
  interceptors: readonly ((ctx: C, next: () => Promise<void>) => Promise<void>)[],
  ctx: C,
  run: () => Promise<void>,
): Promise<void> {
  let next = run;
  for (let i = interceptors.length - 1; i >= 0; i--) {
    const interceptor = interceptors[i] as (ctx: C, next: () => Promise<void>) => Promise<void>;
    const inner = next;
    next = () => interceptor(ctx, inner);
  }
  return next();
}

type Item<T> = { readonly value: T } | { readonly done: true } | { readonly error: unknown };

/** One value at a time from one side to the other; `take` waits for the next `put`. */
class Mailbox<T> {
  readonly #items: T[] = [];
  #waiting: ((value: T) => void) | undefined;

  put(value: T): void {
    const waiting = this.#waiting;
    this.#waiting = undefined;
    if (waiting === undefined) this.#items.push(value);
    else waiting(value);
  }

  take(): Promise<T> {
    if (this.#items.length > 0) return Promise.resolve(this.#items.shift() as T);
    return new Promise((resolve) => {
      this.#waiting = resolve;
    });
  }
}

/**
 * A response stream run inside the chain, for a transport that pulls the messages (Connect): the
 * chain's `next` lasts as long as the stream, so logging and metrics see its whole life and its
 * status, as on the gRPC listeners. A message is produced only when the transport asks for one, so a
 * slow reader still holds the handler back; a refused call never starts the handler. When the
 * transport stops asking (the client went away), the handler's iterator is closed.
 */
export async function* streamThroughChain<T>(
  interceptors: readonly ChainInterceptor[],
  ctx: CallContext,
  start: () => AsyncIterable<T>,
): AsyncGenerator<T> {
  const toConsumer = new Mailbox<Item<T>>();
  const toProducer = new Mailbox<boolean>();
  const produce = async () => {
    const iterator = start()[Symbol.asyncIterator]();
    try {
      while (await toProducer.take()) {
        const step = await iterator.next();
        if (step.done) return;
        toConsumer.put({ value: step.value });
      }
    } finally {
      await iterator.return?.();
    }
  };
  // Never rejects: the outcome travels as an item (and the chain has logged and counted it).
  void runChain(interceptors, ctx, produce).then(
    () => toConsumer.put({ done: true }),
    (error: unknown) => toConsumer.put({ error }),
  );
  let ended = false;
  try {
    for (;;) {
      toProducer.put(true);
      const item = await toConsumer.take();
      if ("value" in item) {
        yield item.value;
        continue;
      }
      ended = true;
      if ("error" in item) throw item.error;
      return;
    }
  } finally {
    if (!ended) toProducer.put(false);
  }
}
