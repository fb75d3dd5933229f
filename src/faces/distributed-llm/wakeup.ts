/**
 * What a stream loop waits on: the next tick, a change someone reported, or the end of the call. A
 * notification that comes while nobody waits is kept, so a change between two waits is never lost.
 */
export class Wakeup {
  #waiter: ((why: "notified") => void) | undefined;
  #pending = false;

  notify(): void {
    const waiter = this.#waiter;
    if (waiter === undefined) {
      this.#pending = true;
      return;
    }
    this.#waiter = undefined;
    waiter("notified");
  }

  /** "tick" after `ms`, "notified" on (or since the last wait) `notify()`, "aborted" when `signal` aborts. */
  wait(ms: number, signal: AbortSignal): Promise<"tick" | "notified" | "aborted"> {
    if (signal.aborted) return Promise.resolve("aborted");
    if (this.#pending) {
      this.#pending = false;
      return Promise.resolve("notified");
    }
    return new Promise((resolve) => {
      const finish = (why: "tick" | "notified" | "aborted") => {
        clearTimeout(timer);
        signal.removeEventListener("abort", onAbort);
        this.#waiter = undefined;
        resolve(why);
      };
      const onAbort = () => finish("aborted");
      const timer = setTimeout(() => finish("tick"), ms);
      signal.addEventListener("abort", onAbort, { once: true });
      this.#waiter = finish;
    });
  }
}
