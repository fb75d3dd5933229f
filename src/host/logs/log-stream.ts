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
  const state = options.state ?? new LogStreamState(options.maxQueued);
  const stop = new AbortController();
  const queue: LogEntry[] = [];
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
    const live = source.follow(query, stop.signal);
    const matches = compileQuery(query);
    pump = (async () => {
      try {
        for await (const entry of live) {
          if (stop.signal.aborted) break;
          if (!matches(entry)) continue;
          if (queue.length >= state.maxQueued) {
            state.overflowed = true;
            queue.length = 0;
            state.queued = 0;
            break;
          }
          queue.push(entry);
          state.queued = queue.length;
          if (queue.length > state.peakQueued) state.peakQueued = queue.length;
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
  const delivered = (entry: LogEntry) => {
    state.delivered++;
    state.lastTimestamp = entry.timestamp;
  };

  try {
    const tail = options.tail > 0 && !stop.signal.aborted ? await source.tail(options.tail, query) : [];
    for (const entry of tail) {
      if (state.overflowed) throw tooSlow();
      if (stop.signal.aborted) return;
      yield entry;
      delivered(entry);
    }
    for (;;) {
      if (state.overflowed) throw tooSlow();
      if (stop.signal.aborted) return;
      const entry = queue.shift();
      if (entry !== undefined) {
        state.queued = queue.length;
        yield entry;
        delivered(entry);
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
    queue.length = 0;
    state.queued = 0;
    await pump;
  }
}
