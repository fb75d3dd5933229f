import { CorralError } from "../../base/errors.ts";
import { compileQuery, type LogEntry, type LogQuery, type LogSource } from "./log-source.ts";

/** One StreamLogs call as it runs; the queue length is what backpressure bounds. */
export class LogStreamState {
  readonly maxQueued: number;
  /** Entries read from the source and waiting for the client. */
  queued = 0;
  /** The most that were ever waiting (never above maxQueued). */
  peakQueued = 0;
  delivered = 0;
  overflowed = false;
  /** Time of the last entry handed to the client: where a reconnect should start. */
  lastTimestamp: number | undefined;
  finished = false;

  constructor(maxQueued: number) {
    this.maxQueued = maxQueued;
  }
}

export interface LogStreamOptions {
  /** Last N matching entries first (0: none). */
  readonly tail: number;
  /** Then new entries until the signal aborts or the source ends. */
  readonly follow: boolean;
  /** More entries than this waiting for a slow reader ends the stream with RESOURCE_EXHAUSTED. */
  readonly maxQueued: number;
  readonly signal: AbortSignal;
  readonly state?: LogStreamState;
}

/** Batches of `follow` for a source that offers only entries one at a time. */
async function* oneByOne(entries: AsyncIterable<LogEntry>): AsyncGenerator<LogEntry[]> {
  for await (const entry of entries) yield [entry];
}

/**
 * The entries of one StreamLogs call: the tail, then (with follow) what arrives. While the client reads
 * slower than the source writes, entries wait in a queue of at most `maxQueued`; one more and the
 * source is let go, the queue dropped, and the stream ends with RESOURCE_EXHAUSTED telling the client
 * where to reconnect from, so that a reader that stalls never makes the agent buffer without bound.
 */
export async function* streamLogEntries(
  source: LogSource,
  query: LogQuery,
  options: LogStreamOptions,
): AsyncGenerator<LogEntry> {
  for await (const batch of streamLogBatches(source, query, options, 1)) yield* batch;
}

/**
 * `streamLogEntries` in batches of at most `maxBatch`: everything waiting goes out at once, so a reader
 * that keeps up pays one wait per burst rather than one per line.
 */
export async function* streamLogBatches(
  source: LogSource,
  query: LogQuery,
  options: LogStreamOptions,
  maxBatch: number,
): AsyncGenerator<LogEntry[]> {
  const state = options.state ?? new LogStreamState(options.maxQueued);
  const stop = new AbortController();
  // A queue read from `head`: shifting a long array moves every entry behind the first, per entry.
  let queue: LogEntry[] = [];
  let head = 0;
  const waiting = () => queue.length - head;
  let wake: (() => void) | undefined;
  const notify = () => {
    const resolve = wake;
    wake = undefined;
    resolve?.();
  };
  const onAbort = () => {
    stop.abort();
    notify();
  };
  if (options.signal.aborted) stop.abort();
  else options.signal.addEventListener("abort", onAbort, { once: true });

  let pumpDone = !options.follow;
  let pumpError: unknown;
  let pump: Promise<void> | undefined;
  if (options.follow && !stop.signal.aborted) {
    // Asked for before the tail, so the tail ends where following starts.
    const live =
      source.followBatches?.(query, stop.signal, Math.max(maxBatch, 1000)) ??
      oneByOne(source.follow(query, stop.signal));
    const matches = compileQuery(query);
    pump = (async () => {
      try {
        for await (const batch of live) {
          if (stop.signal.aborted) break;
          let overflow = false;
          for (const entry of batch) {
            if (!matches(entry)) continue;
            if (waiting() >= state.maxQueued) {
              overflow = true;
              break;
            }
            queue.push(entry);
          }
          if (waiting() > state.peakQueued) state.peakQueued = waiting();
          if (overflow) {
            state.overflowed = true;
            queue = [];
            head = 0;
            state.queued = 0;
            break;
          }
          state.queued = waiting();
          notify();
        }
      } catch (error) {
        if (!stop.signal.aborted) pumpError = error;
      } finally {
        pumpDone = true;
        notify();
      }
    })();
  }

  const tooSlow = () =>
    new CorralError(
      "RESOURCE_EXHAUSTED",
      `reader too slow: more than ${state.maxQueued} log entries were waiting; reconnect with since=${
        state.lastTimestamp ?? query.since ?? 0
      }`,
      { details: { since: String(state.lastTimestamp ?? query.since ?? 0) } },
    );
  const delivered = (batch: readonly LogEntry[]) => {
    state.delivered += batch.length;
    const last = batch[batch.length - 1];
    if (last !== undefined) state.lastTimestamp = last.timestamp;
  };
  const size = Math.max(1, maxBatch);

  try {
    const tail = options.tail > 0 && !stop.signal.aborted ? await source.tail(options.tail, query) : [];
    for (let at = 0; at < tail.length; at += size) {
      if (state.overflowed) throw tooSlow();
      if (stop.signal.aborted) return;
      const batch = tail.slice(at, at + size);
      yield batch;
      delivered(batch);
    }
    for (;;) {
      if (state.overflowed) throw tooSlow();
      if (stop.signal.aborted) return;
      if (waiting() > 0) {
        const batch = queue.slice(head, head + size);
        head += batch.length;
        if (head === queue.length) {
          queue = [];
          head = 0;
        }
        state.queued = waiting();
        yield batch;
        delivered(batch);
        continue;
      }
      if (pumpError !== undefined) throw pumpError;
      if (pumpDone) return;
      await new Promise<void>((resolve) => {
        wake = resolve;
      });
    }
  } finally {
    state.finished = true;
    options.signal.removeEventListener("abort", onAbort);
    stop.abort();
    queue = [];
    head = 0;
    state.queued = 0;
    await pump;
  }
}
