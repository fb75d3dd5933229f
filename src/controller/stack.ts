/** Stops one thing that was started. */
export type Closer = () => Promise<void> | void;

/**
 * What an assembler started, stopped in reverse order of starting: what started last may lean on what
 * started before it, so it stops first. Node 20 has no AsyncDisposableStack; this is the little of it
 * the controller needs, plus `unwind` for a start that failed half way.
 */
export class Stack {
  readonly #entries: (Closer | Stack)[] = [];

  /** Registers how to stop something just started. */
  defer(closer: Closer): void {
    this.#entries.push(closer);
  }

  /** Another assembler's stack, stopped as one entry here, its own parts in their own order. */
  adopt(stack: Stack): void {
    this.#entries.push(stack);
  }

  /** Stops everything, last started first; the first failure ends the stop and is thrown. */
  async close(): Promise<void> {
    for (let entry = this.#entries.pop(); entry !== undefined; entry = this.#entries.pop()) {
      if (entry instanceof Stack) await entry.close();
      else await entry();
    }
  }

  /** After a start that failed: stops what did start, going on past what fails (the start's error is the one to report). */
  async unwind(): Promise<void> {
    for (let entry = this.#entries.pop(); entry !== undefined; entry = this.#entries.pop()) {
      if (entry instanceof Stack) await entry.unwind();
      else
        await Promise.resolve()
          .then(entry)
          .catch(() => undefined);
    }
  }
}

/**
 * Runs one assembler with a stack of its own: if it throws half way, what it had started is stopped
 * before the error goes on; otherwise the stack comes back with what it built.
 */
export async function assemble<T>(build: (stack: Stack) => Promise<T> | T): Promise<T & { stack: Stack }> {
  const stack = new Stack();
  try {
    return { ...(await build(stack)), stack };
  } catch (error) {
    await stack.unwind();
    throw error;
  }
}
