import type { CorralError } from "../base/errors.ts";
import { storeErrors } from "./store-errors.ts";
import type { StoreEvent } from "./types.ts";

/**
 * The live queue of one watcher: batches wait here until the consumer pulls them. It holds at most
 * `maxLag` events (a single batch arriving at an empty queue is always taken, however large, so that a big
 * txn cannot wedge a watcher for good); past that it drops everything and fails with the revision to resume
 * from. One consumer per buffer.
 */
export class WatchBuffer {
  readonly maxLag: number;
  #batches: StoreEvent[][] = [];
  #pending = 0;
  #failure: CorralError | undefined;
  #closed = false;
  #wake: (() => void) | undefined;

  constructor(maxLag: number) {
    this.maxLag = maxLag;
  }

  /** False once the buffer no longer takes batches (overflowed, failed or closed): stop feeding it. */
  push(batch: StoreEvent[]): boolean {
    if (this.#closed || this.#failure !== undefined) return false;
    const first = batch[0];
    if (first === undefined) return true;
    if (this.#pending > 0 && this.#pending + batch.length > this.maxLag) {
      const resumeRevision = this.#batches[0]?.[0]?.revision ?? first.revision;
      this.fail(storeErrors.watcherLagged(this.maxLag, resumeRevision));
      return false;
    }
    this.#batches.push(batch);
    this.#pending += batch.length;
    this.#wakeConsumer();
    return true;
  }

  /** Drops what is queued; the consumer's next pull throws `error`. */
  fail(error: CorralError): void {
    if (this.#closed || this.#failure !== undefined) return;
    this.#failure = error;
    this.#clear();
    this.#wakeConsumer();
  }

  /** Drops what is queued; the consumer's next pull gets `undefined` (the end). */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#clear();
    this.#wakeConsumer();
  }

  /** The next batch, `undefined` once closed; throws the failure once failed. */
  async next(): Promise<StoreEvent[] | undefined> {
    while (this.#batches.length === 0 && this.#failure === undefined && !this.#closed) {
      await new Promise<void>((resolve) => {
        this.#wake = resolve;
      });
    }
    if (this.#failure !== undefined) throw this.#failure;
    const batch = this.#batches.shift();
    if (batch !== undefined) this.#pending -= batch.length;
    return batch;
  }

  #clear(): void {
    this.#batches = [];
    this.#pending = 0;
  }

  #wakeConsumer(): void {
    const wake = this.#wake;
    this.#wake = undefined;
    wake?.();
  }
}
