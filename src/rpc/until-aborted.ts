/**
 * Yields from `source` until `signal` aborts — also while it waits for the next item, which a plain
 * `for await` with a check per item cannot do for a stream whose client is silent for minutes.
 */
export async function* untilAborted<T>(source: AsyncIterable<T>, signal: AbortSignal): AsyncGenerator<T> {
  if (signal.aborted) return;
  const iterator = source[Symbol.asyncIterator]();
  let onAbort: () => void = () => undefined;
  const aborted = new Promise<"aborted">((resolve) => {
    onAbort = () => resolve("aborted");
  });
  signal.addEventListener("abort", onAbort, { once: true });
  let finished = false;
  try {
    for (;;) {
      const step = await Promise.race([iterator.next(), aborted]);
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
