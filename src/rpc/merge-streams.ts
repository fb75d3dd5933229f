/**
 * Interleaves several async iterables into one, in the order their items arrive. Each source has at
 * most one item in flight (its next() is not called again until that item is taken), so the merge
 * buffers nothing of its own. The first failure ends the merge with that error; ending it early (or
 * failing) asks every source still open to close, without waiting: a source blocked on its next item
 * closes when it wakes, so callers should also abort what the sources wait on.
 */
export async function* mergeStreams<T>(sources: readonly AsyncIterable<T>[]): AsyncGenerator<T> {
  const iterators = sources.map((source) => source[Symbol.asyncIterator]());
  type Step = { index: number; result: IteratorResult<T> };
  const pending = new Map<number, Promise<Step>>();
  const pull = (index: number) => {
    const iterator = iterators[index];
    if (iterator === undefined) return;
    pending.set(
      index,
      iterator.next().then((result) => ({ index, result })),
    );
  };
  for (let index = 0; index < iterators.length; index += 1) pull(index);
  try {
    while (pending.size > 0) {
      const { index, result } = await Promise.race(pending.values());
      if (result.done === true) {
        pending.delete(index);
        continue;
      }
      pull(index);
      yield result.value;
    }
  } finally {
    for (const [index, step] of pending) {
      step.catch(() => undefined); // a source failing after the merge ended has no one to tell
      iterators[index]?.return?.()?.catch(() => undefined);
    }
    pending.clear();
  }
}
