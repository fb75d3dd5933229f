/**
 * What every log source of StreamLogs has in common: entries, a filter, and the LogSource interface
 * (the agent's own log, allowed files, the journal, pipeline output).
 */

export const entryLevels = ["trace", "debug", "info", "warn", "error", "fatal"] as const;
export type EntryLevel = (typeof entryLevels)[number];

/** The levels a LogFilter may ask for as its minimum. */
export const filterLevels = ["debug", "info", "warn", "error"] as const;
export type FilterLevel = (typeof filterLevels)[number];

export interface LogEntry {
  /** Milliseconds since the Unix epoch. */
  readonly timestamp: number;
  readonly level: EntryLevel;
  readonly message: string;
  /** The source as the client named it: `agent`, `journal`, `file:/var/log/syslog`, `pipeline:<id>`. */
  readonly source: string;
  readonly fields: Readonly<Record<string, string>>;
}

/** A LogFilter after validation. */
export interface LogQuery {
  readonly minLevel?: FilterLevel;
  /** Case-insensitive substring of the message or of a field's value. */
  readonly contains?: string;
  /** Milliseconds since the Unix epoch; entries before it are left out. */
  readonly since?: number;
}

export interface LogSource {
  /** The last `n` entries that match, oldest first. */
  tail(n: number, query: LogQuery): Promise<LogEntry[]>;
  /**
   * Entries that arrive from now on (sources start watching when this is called, not when iteration
   * starts, so that a tail taken right after it neither misses nor repeats entries where the source can
   * promise that); ends when `signal` aborts or the source ends (a finished pipeline run).
   */
  follow(query: LogQuery, signal: AbortSignal): AsyncIterable<LogEntry>;
  /**
   * The same entries as `follow`, whatever is there at once (up to `maxBatch` a batch): sources that can
   * hand over a burst in one go offer it, so a reader costs one wait per burst, not one per line.
   */
  followBatches?(query: LogQuery, signal: AbortSignal, maxBatch: number): AsyncIterable<LogEntry[]>;
}

const rank: Readonly<Record<EntryLevel, number>> = {
  trace: 0,
  debug: 1,
  info: 2,
  warn: 3,
  error: 4,
  fatal: 5,
};

export function levelRank(level: EntryLevel): number {
  return rank[level];
}

/** Compiles a query into a predicate (called for every entry of a busy log: keep it cheap). */
export function compileQuery(query: LogQuery): (entry: LogEntry) => boolean {
  const min = query.minLevel === undefined ? 0 : rank[query.minLevel];
  const since = query.since ?? 0;
  const needle = query.contains ? query.contains.toLowerCase() : undefined;
  return (entry) => {
    if (rank[entry.level] < min) return false;
    if (entry.timestamp < since) return false;
    if (needle === undefined) return true;
    if (entry.message.toLowerCase().includes(needle)) return true;
    for (const value of Object.values(entry.fields)) if (value.toLowerCase().includes(needle)) return true;
    return false;
  };
}

/** pino's numeric levels (10 trace … 60 fatal) as entry levels. */
export function levelOfPino(level: unknown): EntryLevel {
  if (typeof level === "string") return asEntryLevel(level) ?? "info";
  if (typeof level !== "number") return "info";
  if (level <= 10) return "trace";
  if (level <= 20) return "debug";
  if (level <= 30) return "info";
  if (level <= 40) return "warn";
  if (level <= 50) return "error";
  return "fatal";
}

export function asEntryLevel(text: string): EntryLevel | undefined {
  const lower = text.toLowerCase();
  if ((entryLevels as readonly string[]).includes(lower)) return lower as EntryLevel;
  if (lower === "warning") return "warn";
  if (lower === "err" || lower === "crit" || lower === "critical") return "error";
  if (lower === "emerg" || lower === "alert" || lower === "panic") return "fatal";
  if (lower === "notice") return "info";
  return undefined;
}

/** Cuts a string to at most `maxBytes` of UTF-8 (roughly: by characters, never inside a pair). */
export function capText(text: string, maxBytes: number): { text: string; cut: boolean } {
  if (text.length <= maxBytes / 3 || Buffer.byteLength(text, "utf8") <= maxBytes) return { text, cut: false };
  let cut = Buffer.from(text, "utf8").subarray(0, maxBytes).toString("utf8");
  // A multi-byte character split at the end decodes as U+FFFD: drop it.
  if (cut.endsWith("\uFFFD")) cut = cut.slice(0, -1);
  return { text: cut, cut: true };
}

const reservedKeys = new Set(["level", "time", "msg"]);
const maxFields = 32;
const maxFieldBytes = 1024;

/**
 * Parses one line of pino JSON (the agent's own log, or a corral log file) into an entry; a line that
 * is not a JSON object becomes an `info` entry with the line as its message.
 */
export function parseJsonLogLine(
  line: string,
  source: string,
  maxLineBytes: number,
  fallbackTimestamp: number,
): LogEntry | undefined {
  const trimmed = line.endsWith("\n") ? line.slice(0, -1) : line;
  if (trimmed === "") return undefined;
  let object: Record<string, unknown> | undefined;
  if (trimmed.startsWith("{")) {
    try {
      const parsed: unknown = JSON.parse(trimmed);
      if (parsed !== null && typeof parsed === "object" && !Array.isArray(parsed))
        object = parsed as Record<string, unknown>;
    } catch {
      object = undefined;
    }
  }
  if (object === undefined) {
    const { text, cut } = capText(trimmed, maxLineBytes);
    return {
      timestamp: fallbackTimestamp,
      level: "info",
      message: text,
      source,
      fields: cut ? { truncated: "true" } : {},
    };
  }
  const fields: Record<string, string> = {};
  let count = 0;
  let budget = maxLineBytes;
  for (const [key, value] of Object.entries(object)) {
    if (reservedKeys.has(key) || value === undefined) continue;
    if (count >= maxFields || budget <= 0) {
      fields.truncated = "true";
      break;
    }
    const raw = typeof value === "string" ? value : JSON.stringify(value);
    const { text, cut } = capText(raw ?? String(value), Math.min(maxFieldBytes, budget));
    fields[key] = text;
    if (cut) fields.truncated = "true";
    budget -= text.length + key.length;
    count++;
  }
  const msg =
    typeof object.msg === "string" ? object.msg : typeof object.message === "string" ? object.message : "";
  const { text: message, cut } = capText(msg, maxLineBytes);
  if (cut) fields.truncated = "true";
  const time =
    typeof object.time === "number"
      ? object.time
      : typeof object.time === "string"
        ? Date.parse(object.time)
        : Number.NaN;
  return {
    timestamp: Number.isFinite(time) ? time : fallbackTimestamp,
    level: levelOfPino(object.level),
    message,
    source,
    fields,
  };
}

/**
 * Waits until `wake` is called or `signal` aborts. Returns the function that wakes it, and the promise;
 * listeners are removed once it settles.
 */
export function abortableWait(
  signal: AbortSignal,
  timeoutMs?: number,
): { promise: Promise<void>; wake: () => void } {
  let wake: () => void = () => {};
  const promise = new Promise<void>((resolve) => {
    let timer: NodeJS.Timeout | undefined;
    const done = () => {
      signal.removeEventListener("abort", done);
      if (timer !== undefined) clearTimeout(timer);
      resolve();
    };
    wake = done;
    if (signal.aborted) {
      resolve();
      return;
    }
    signal.addEventListener("abort", done, { once: true });
    if (timeoutMs !== undefined) timer = setTimeout(done, timeoutMs);
  });
  return { promise, wake };
}
