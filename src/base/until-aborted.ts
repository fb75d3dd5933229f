/**
 * Yields from `source` until `signal` aborts — also while it waits for the next item, which a plain
 * `for await` with a check per item cannot do for a stream whose client is silent for minutes.
 */
export async function* untilAborted<T>(source: AsyncIterable<T>, signal: AbortSignal): AsyncGenerator<T> {
  const iterator = source[Symbol.asyncIterator]();
  let finished = false;
  try {
    while (!signal.aborted) {
      // A promise and a listener per item, dropped after it: racing one long-lived promise would add a
      // reaction to it per item for the whole life of the stream.
      let onAbort: () => void = () => undefined;
      const aborted = new Promise<"aborted">((resolve) => {
        onAbort = () => resolve("aborted");
      });
      signal.addEventListener("abort", onAbort, { once: true });
      let step: IteratorResult<T> | "aborted";
      try {
        step = await Promise.race([iterator.next(), aborted]);
      } finally {
        signal.removeEventListener("abort", onAbort);
      }
      if (step === "aborted") return;
      if (step.done) {
        finished = true;
        return;
      }
      yield step.value;
    }
  } finally {
    // Not awaited: a generator parked in `next()` returns only once that settles (the call ends).
    if (!finished) iterator.return?.().catch(() => undefined);
  }
}
