/**
 * Yields from `source` until `signal` aborts — also while it waits for the next item, which a plain
 * `for await` with a check per item cannot do for a stream whose client is silent for minutes.
 */
export async function* untilAborted<T>(source: AsyncIterable<T>, signal: AbortSignal): AsyncGenerator<T> {
  if (signal.aborted) return;
  const iterator = source[Symbol.asyncIterator]();
  let finished = false;
  // One listener for the whole stream. Adding and removing one per item cost more than the item itself
  // beside thousands of open streams (Node walks the signal's listener list), and racing one long-lived
  // promise would add a reaction to it per item that is never released. Instead the listener wakes
  // whichever wait is current.
  let wake: ((step: "aborted") => void) | undefined;
  const onAbort = () => wake?.("aborted");
  signal.addEventListener("abort", onAbort, { once: true });
  try {
    while (!signal.aborted) {
      const next = iterator.next();
      const aborted = new Promise<"aborted">((resolve) => {
        wake = resolve;
      });
      const step = await Promise.race([next, aborted]);
      wake = undefined;
      if (step === "aborted") return;
      if (step.done) {
        finished = true;
        return;
      }
      yield step.value;
    }
  } finally {
    signal.removeEventListener("abort", onAbort);
    // Not awaited: a generator parked in `next()` returns only once that settles (the call ends).
    if (!finished) iterator.return?.().catch(() => undefined);
  }
}
