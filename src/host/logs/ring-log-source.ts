import { CorralError } from "../../base/errors.ts";
import { defaults } from "../../defaults.ts";
import {
  compileQuery,
  type EntryLevel,
  type LogEntry,
  type LogQuery,
  type LogSource,
  parseJsonLogLine,
} from "./log-source.ts";

/**
 * A bounded in-memory log: the newest `capacity` entries, oldest overwritten first. Followers read it
 * through a cursor (a sequence number), not through a queue of their own, so following costs no memory
 * beyond the ring; a follower that falls a whole ring behind is told so (RESOURCE_EXHAUSTED).
 * Used for the agent's own log, and by the pipeline runtime for a run's output (`end()` when the run
 * is over ends every follower once it has read everything).
 */
export class RingLogSource implements LogSource {
  readonly capacity: number;
  readonly #entries: (LogEntry | undefined)[];
  /** Sequence number the next entry gets; entry `s` lives at `s % capacity`. */
  #next = 0;
  #ended = false;
  #waiters = new Set<() => void>();
  /** Where each follower has read up to: what `room()` waits on. */
  readonly #cursors = new Set<{ at: number }>();
  #roomWaiters = new Set<() => void>();

  constructor(capacity: number = defaults.agentDiagnostics.logs.agentRingLines) {
    if (!Number.isInteger(capacity) || capacity < 1)
      throw new Error(`ring capacity must be ≥ 1, got ${capacity}`);
    this.capacity = capacity;
    this.#entries = new Array<LogEntry | undefined>(capacity);
  }

  /** Entries held now (at most `capacity`). */
  get size(): number {
    return Math.min(this.#next, this.capacity);
  }

  get ended(): boolean {
    return this.#ended;
  }

  /** Followers waiting for the next entry (for tests: none may be left once streams end). */
  get waiting(): number {
    return this.#waiters.size;
  }

  /** Followers reading now. */
  get followers(): number {
    return this.#cursors.size;
  }

  append(entry: LogEntry): void {
    if (this.#ended) return;
    this.#entries[this.#next % this.capacity] = entry;
    this.#next++;
    this.#wakeAll();
  }

  /** No more entries will come: followers end after reading what is there. */
  end(): void {
    this.#ended = true;
    this.#wakeAll();
    this.#wakeRoom();
  }

  /**
   * Resolves once every follower has at least `free` entries of the ring left before the writer laps it,
   * or after `maxWaitMs`. A writer that can slow down (a pipeline run's output) awaits this between
   * bursts, so a reader that keeps reading is never lapped however fast the writer is, while a reader
   * that stalls holds the writer up for at most `maxWaitMs` before it is lapped and told so.
   */
  room(free: number, maxWaitMs: number): Promise<void> {
    if (this.#hasRoom(free)) return Promise.resolve();
    return new Promise((resolve) => {
      const check = () => {
        if (!this.#ended && !this.#hasRoom(free)) return;
        done();
      };
      const done = () => {
        clearTimeout(timer);
        this.#roomWaiters.delete(check);
        resolve();
      };
      const timer = setTimeout(done, maxWaitMs);
      this.#roomWaiters.add(check);
    });
  }

  async tail(n: number, query: LogQuery): Promise<LogEntry[]> {
    return this.#tailNow(n, query);
  }

  follow(query: LogQuery, signal: AbortSignal): AsyncIterable<LogEntry> {
    const batches = this.followBatches(query, signal, 1000);
    return {
      async *[Symbol.asyncIterator]() {
        for await (const batch of batches) yield* batch;
      },
    };
  }

  /**
   * Like `follow`, but everything already there comes at once (up to `maxBatch` entries a batch): a
   * reader costs one wait per burst rather than one per line, which is what lets it keep up with a
   * writer as fast as `cat`.
   */
  followBatches(query: LogQuery, signal: AbortSignal, maxBatch: number): AsyncIterable<LogEntry[]> {
    // The cursor is taken now: a tail asked for right after this call ends exactly where following starts.
    const start = this.#next;
    const matches = compileQuery(query);
    return {
      [Symbol.asyncIterator]: () => this.#follow(start, matches, signal, Math.max(1, maxBatch)),
    };
  }

  #tailNow(n: number, query: LogQuery): LogEntry[] {
    const matches = compileQuery(query);
    const out: LogEntry[] = [];
    const oldest = this.#next - this.size;
    for (let seq = this.#next - 1; seq >= oldest && out.length < n; seq--) {
      const entry = this.#entries[seq % this.capacity];
      if (entry !== undefined && matches(entry)) out.push(entry);
    }
    return out.reverse();
  }

  async *#follow(
    start: number,
    matches: (entry: LogEntry) => boolean,
    signal: AbortSignal,
    maxBatch: number,
  ): AsyncGenerator<LogEntry[]> {
    const cursor = { at: start };
    this.#cursors.add(cursor);
    try {
      while (!signal.aborted) {
        while (cursor.at < this.#next) {
          if (cursor.at < this.#next - this.capacity) {
            throw new CorralError(
              "RESOURCE_EXHAUSTED",
              `reader fell ${this.#next - cursor.at} entries behind a log that keeps ${this.capacity}`,
            );
          }
          const batch: LogEntry[] = [];
          const until = Math.min(this.#next, cursor.at + maxBatch);
          for (; cursor.at < until; cursor.at++) {
            const entry = this.#entries[cursor.at % this.capacity];
            if (entry !== undefined && matches(entry)) batch.push(entry);
          }
          this.#wakeRoom();
          if (batch.length > 0) {
            yield batch;
            if (signal.aborted) return;
          }
        }
        if (this.#ended) return;
        await this.#changed(signal);
      }
    } finally {
      this.#cursors.delete(cursor);
      this.#wakeRoom();
    }
  }

  #hasRoom(free: number): boolean {
    const need = this.#next + Math.min(free, this.capacity) - this.capacity;
    const lapped = this.#next - this.capacity;
    // A follower already lapped is told so at its next read: waiting for it would only slow the writer.
    for (const cursor of this.#cursors) if (cursor.at < need && cursor.at >= lapped) return false;
    return true;
  }

  #wakeRoom(): void {
    if (this.#roomWaiters.size === 0) return;
    for (const check of [...this.#roomWaiters]) check();
  }

  #changed(signal: AbortSignal): Promise<void> {
    return new Promise((resolve) => {
      const done = () => {
        this.#waiters.delete(done);
        signal.removeEventListener("abort", done);
        resolve();
      };
      if (signal.aborted) return resolve();
      this.#waiters.add(done);
      signal.addEventListener("abort", done, { once: true });
    });
  }

  #wakeAll(): void {
    if (this.#waiters.size === 0) return;
    const waiters = [...this.#waiters];
    this.#waiters.clear();
    for (const wake of waiters) wake();
  }
}

/**
 * The agent's own log: the JSON lines its logger writes (through `createLogger({ tee })`), parsed
 * into level, message and fields.
 */
export class AgentLogRing extends RingLogSource {
  readonly #maxLineBytes: number;
  readonly #source: string;

  constructor(options: { capacity?: number; maxLineBytes?: number; source?: string } = {}) {
    super(options.capacity ?? defaults.agentDiagnostics.logs.agentRingLines);
    this.#maxLineBytes = options.maxLineBytes ?? defaults.agentDiagnostics.logs.maxLineBytes;
    this.#source = options.source ?? "agent";
  }

  /** The logger's tee: one JSON line (newline-terminated or not). */
  readonly ingest = (line: string): void => {
    const entry = parseJsonLogLine(line, this.#source, this.#maxLineBytes, Date.now());
    if (entry !== undefined) this.append(entry);
  };

  /** Adds an entry without going through a logger. */
  write(level: EntryLevel, message: string, fields: Record<string, string> = {}): void {
    this.append({ timestamp: Date.now(), level, message, source: this.#source, fields });
  }
}
