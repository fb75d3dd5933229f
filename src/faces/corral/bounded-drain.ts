import type { CorralError } from "../../base/errors.ts";

/**
 * Pumps `upstream` (batches of items) into a bounded queue that the client takes at its pace, in
 * batches of at most `maxBatch`. A client more than `maxPending` items behind is dropped with
 * `overflow()` rather than buffered without bound. Ends when upstream ends or `signal` aborts; on
 * any end, `upstreamAbort` is aborted and the pump awaited, so nothing is left running.
 */
export async function* drainBounded<T>(options: {
  readonly upstream: AsyncIterable<readonly T[]>;
  readonly upstreamAbort: AbortController;
  readonly signal: AbortSignal;
  readonly maxPending: number;
  readonly maxBatch: number;
  readonly overflow: () => CorralError;
}): AsyncGenerator<T[]> {
  const { upstream, upstreamAbort, signal, maxPending } = options;
  const queue: T[] = [];
  let failure: unknown;
  let finished = false;
  let wake: (() => void) | undefined;
  const notify = () => {
    const resolve = wake;
    wake = undefined;
    resolve?.();
  };
  const pump = (async () => {
    try {
      for await (const batch of upstream) {
        queue.push(...batch);
        if (queue.length > maxPending) {
          failure = options.overflow();
          queue.length = 0;
          upstreamAbort.abort();
          break;
        }
        notify();
      }
    } catch (error) {
      if (!upstreamAbort.signal.aborted) failure = error;
    } finally {
      finished = true;
      notify();
    }
  })();
  try {
    for (;;) {
      if (failure !== undefined) throw failure;
      if (queue.length > 0) {
        yield queue.splice(0, options.maxBatch);
        continue;
      }
      if (finished || signal.aborted) return;
      await new Promise<void>((resolve) => {
        wake = resolve;
      });
    }
  } finally {
    upstreamAbort.abort();
    await pump;
  }
}
