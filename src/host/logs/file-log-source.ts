import { type FSWatcher, constants as fsConstants, statSync, watch } from "node:fs";
import { type FileHandle, open, realpath, stat } from "node:fs/promises";
import { basename, dirname, isAbsolute, normalize } from "node:path";
import { parseDuration } from "../../base/duration.ts";
import { CorralError } from "../../base/errors.ts";
import { defaults } from "../../defaults.ts";
import { printable } from "../../security/exec-allow-list.ts";
import { LineSplitter } from "./line-splitter.ts";
import {
  abortableWait,
  asEntryLevel,
  compileQuery,
  type EntryLevel,
  type LogEntry,
  type LogQuery,
  type LogSource,
  parseJsonLogLine,
} from "./log-source.ts";

export interface FileLogOptions {
  /**
   * Files that may be read: absolute paths; `dir/*` (or `dir/*.log`) for files directly in `dir`;
   * `dir/**` for any file below it.
   */
  readonly allowed?: readonly string[];
  readonly pollIntervalMs?: number;
  readonly tailMaxBytes?: number;
  readonly maxLineBytes?: number;
}

interface Pattern {
  readonly text: string;
  /** The fixed part: the file itself, or the directory. */
  readonly base: string;
  readonly kind: "exact" | "children" | "below";
  readonly name?: RegExp;
}

function compilePattern(text: string): Pattern {
  if (!isAbsolute(text) || normalize(text) !== text || text.includes("\0"))
    throw new Error(`allowed log file "${text}" must be an absolute, normalized path`);
  const last = basename(text);
  const dir = dirname(text);
  if (dir.includes("*"))
    throw new Error(`allowed log file "${text}": "*" may appear in the last segment only`);
  if (last === "**") return { text, base: dir, kind: "below" };
  if (last.includes("*")) {
    const source = last
      .split("*")
      .map((part) => part.replace(/[.+?^${}()|[\]\\]/g, "\\$&"))
      .join("[^/]*");
    return { text, base: dir, kind: "children", name: new RegExp(`^${source}$`) };
  }
  return { text, base: text, kind: "exact" };
}

function matchesPattern(pattern: Pattern, base: string, path: string): boolean {
  switch (pattern.kind) {
    case "exact":
      return path === base;
    case "children":
      return dirname(path) === base && (pattern.name?.test(basename(path)) ?? false);
    case "below":
      return path.startsWith(base === "/" ? "/" : `${base}/`) && path !== base;
  }
}

const chunkBytes = 64 * 1024;

/**
 * `file:<path>` sources: only files the allow-list names, checked on the path as written (no `..`,
 * no relative path) and again on the real path, after every symlink is resolved, so a link cannot lead
 * out of the allowed places. Opened with O_NOFOLLOW on the resolved path, and only regular files.
 */
export class FileLogSources {
  readonly #patterns: readonly Pattern[];
  readonly #pollIntervalMs: number;
  readonly #tailMaxBytes: number;
  readonly #maxLineBytes: number;

  constructor(options: FileLogOptions = {}) {
    const d = defaults.agentDiagnostics.logs;
    this.#patterns = (options.allowed ?? d.allowedFiles).map(compilePattern);
    this.#pollIntervalMs = options.pollIntervalMs ?? parseDuration(d.filePollInterval, "filePollInterval");
    this.#tailMaxBytes = options.tailMaxBytes ?? d.tailMaxBytes;
    this.#maxLineBytes = options.maxLineBytes ?? d.maxLineBytes;
  }

  get allowed(): readonly string[] {
    return this.#patterns.map((p) => p.text);
  }

  /** The source for `path`; PERMISSION_DENIED outside the allow-list, NOT_FOUND when it does not exist. */
  async open(path: string): Promise<FileLogSource> {
    await this.check(path);
    return new FileLogSource(path, this, {
      pollIntervalMs: this.#pollIntervalMs,
      tailMaxBytes: this.#tailMaxBytes,
      maxLineBytes: this.#maxLineBytes,
    });
  }

  /** Checks `path` and answers its real path. */
  async check(path: string): Promise<string> {
    const deny = (why: string) =>
      new CorralError(
        "PERMISSION_DENIED",
        `file "${printable(path)}" ${why}; allowed: ${this.allowed.join(", ") || "none"}`,
        { details: { field: "source" } },
      );
    if (path.length === 0 || path.length > 4096 || /[\0\n\r]/.test(path)) throw deny("is not a valid path");
    if (!isAbsolute(path)) throw deny("is not an absolute path");
    if (path.split("/").some((segment) => segment === ".." || segment === "."))
      throw deny("has a . or .. segment");
    if (normalize(path) !== path) throw deny("is not a normalized path");
    if (!this.#patterns.some((p) => matchesPattern(p, p.base, path)))
      throw deny("is not an allowed log file");
    let real: string;
    try {
      real = await realpath(path);
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === "ENOENT")
        throw new CorralError("NOT_FOUND", `log file "${path}" does not exist`, {
          details: { field: "source" },
        });
      throw deny(`cannot be resolved (${(error as NodeJS.ErrnoException).code ?? "error"})`);
    }
    let allowed = false;
    for (const pattern of this.#patterns) {
      const base = await realpath(pattern.base).catch(() => undefined);
      if (base !== undefined && matchesPattern(pattern, base, real)) {
        allowed = true;
        break;
      }
    }
    if (!allowed) throw deny("resolves to a file outside the allowed ones");
    const info = await stat(real).catch(() => undefined);
    if (info === undefined) throw new CorralError("NOT_FOUND", `log file "${path}" does not exist`);
    if (!info.isFile()) throw deny("is not a regular file");
    return real;
  }
}

interface OpenFile {
  readonly handle: FileHandle;
  readonly real: string;
  readonly ino: number;
  readonly dev: number;
}

/** One allowed file: tail reads backwards from the end; follow watches for appended lines. */
export class FileLogSource implements LogSource {
  readonly path: string;
  readonly source: string;
  readonly #access: FileLogSources;
  readonly #pollIntervalMs: number;
  readonly #tailMaxBytes: number;
  readonly #maxLineBytes: number;

  constructor(
    path: string,
    access: FileLogSources,
    options: { pollIntervalMs: number; tailMaxBytes: number; maxLineBytes: number },
  ) {
    this.path = path;
    this.source = `file:${path}`;
    this.#access = access;
    this.#pollIntervalMs = options.pollIntervalMs;
    this.#tailMaxBytes = options.tailMaxBytes;
    this.#maxLineBytes = options.maxLineBytes;
  }

  async tail(n: number, query: LogQuery): Promise<LogEntry[]> {
    if (n <= 0) return [];
    const matches = compileQuery(query);
    const file = await this.#open();
    try {
      const info = await file.handle.stat();
      const fallback = Math.round(info.mtimeMs);
      const newestFirst: LogEntry[] = [];
      let end = info.size;
      let carry: Buffer = Buffer.alloc(0);
      let budget = this.#tailMaxBytes;
      const take = (bytes: Buffer): boolean => {
        if (bytes.length === 0) return false;
        const cut = bytes.length > this.#maxLineBytes;
        const line = cut ? bytes.subarray(0, this.#maxLineBytes) : bytes;
        const entry = parseTextLine(line, cut, this.source, fallback);
        if (entry.dated && query.since !== undefined && entry.entry.timestamp < query.since) return true;
        if (matches(entry.entry)) newestFirst.push(entry.entry);
        return newestFirst.length >= n;
      };
      let done = false;
      while (!done && end > 0 && budget > 0) {
        const length = Math.min(chunkBytes, end, budget);
        const start = end - length;
        const buffer = Buffer.alloc(length);
        await readFully(file.handle, buffer, start);
        budget -= length;
        end = start;
        const data = carry.length === 0 ? buffer : Buffer.concat([buffer, carry]);
        let stop = data.length;
        while (stop > 0 && !done) {
          const nl = data.lastIndexOf(0x0a, stop - 1);
          if (nl < 0) break;
          done = take(trimCr(data.subarray(nl + 1, stop)));
          stop = nl;
        }
        carry = data.subarray(0, stop);
        if (!done && end === 0) done = take(trimCr(carry));
      }
      return newestFirst.reverse();
    } finally {
      await file.handle.close();
    }
  }

  follow(query: LogQuery, signal: AbortSignal): AsyncIterable<LogEntry> {
    // Where following starts is fixed now, so a tail taken right after this call overlaps it at most by
    // what is written in between.
    let start = 0;
    try {
      start = statSync(this.path).size;
    } catch {
      start = 0;
    }
    const matches = compileQuery(query);
    return { [Symbol.asyncIterator]: () => this.#follow(start, matches, signal) };
  }

  async *#follow(
    start: number,
    matches: (entry: LogEntry) => boolean,
    signal: AbortSignal,
  ): AsyncGenerator<LogEntry> {
    let current = await this.#open();
    let position = start;
    const splitter = new LineSplitter(this.#maxLineBytes);
    const buffer = Buffer.alloc(chunkBytes);
    let watcher: FSWatcher | undefined;
    let dirty = false;
    let wake: () => void = () => {};
    const rewatch = (path: string) => {
      watcher?.close();
      watcher = undefined;
      try {
        watcher = watch(path, { persistent: false }, () => {
          dirty = true;
          wake();
        });
        watcher.on("error", () => {
          // Polling still runs.
          watcher?.close();
          watcher = undefined;
        });
      } catch {
        // No inotify (or too many watches): polling alone.
      }
    };
    const toEntries = (lines: ReturnType<LineSplitter["push"]>): LogEntry[] =>
      lines.map((line) => parseTextLine(line.bytes, line.cut, this.source, Date.now()).entry).filter(matches);
    try {
      rewatch(current.real);
      if ((await current.handle.stat()).size < position) position = 0;
      while (!signal.aborted) {
        dirty = false;
        // Appended data (from the start again if the file was truncated: copytruncate rotation).
        const size = (await current.handle.stat()).size;
        if (size < position) {
          position = 0;
          splitter.reset();
        }
        while (position < size && !signal.aborted) {
          const read = await current.handle.read(
            buffer,
            0,
            Math.min(buffer.length, size - position),
            position,
          );
          if (read.bytesRead === 0) break;
          position += read.bytesRead;
          for (const entry of toEntries(splitter.push(buffer.subarray(0, read.bytesRead)))) {
            yield entry;
            if (signal.aborted) return;
          }
        }
        // Rotation: the name now points at another file. Finish the old one, then follow the new.
        const next = await this.#reopenIfRotated(current);
        if (next !== undefined) {
          for (;;) {
            const read = await current.handle.read(buffer, 0, buffer.length, position);
            if (read.bytesRead === 0) break;
            position += read.bytesRead;
            for (const entry of toEntries(splitter.push(buffer.subarray(0, read.bytesRead)))) yield entry;
          }
          for (const entry of toEntries(splitter.flush())) yield entry;
          await current.handle.close();
          current = next;
          position = 0;
          rewatch(current.real);
          continue;
        }
        if (dirty) continue;
        const wait = abortableWait(signal, this.#pollIntervalMs);
        wake = wait.wake;
        await wait.promise;
        wake = () => {};
      }
    } finally {
      watcher?.close();
      await current.handle.close().catch(() => {});
    }
  }

  async #reopenIfRotated(current: OpenFile): Promise<OpenFile | undefined> {
    let info: Awaited<ReturnType<typeof stat>>;
    try {
      info = await stat(this.path);
    } catch {
      // Gone for now (between rename and create): keep reading the old file.
      return undefined;
    }
    if (info.ino === current.ino && info.dev === current.dev) return undefined;
    try {
      return await this.#open();
    } catch (error) {
      if (error instanceof CorralError && error.code === "NOT_FOUND") return undefined;
      throw error;
    }
  }

  async #open(): Promise<OpenFile> {
    const real = await this.#access.check(this.path);
    let handle: FileHandle;
    try {
      handle = await open(real, fsConstants.O_RDONLY | fsConstants.O_NOFOLLOW | fsConstants.O_NONBLOCK);
    } catch (error) {
      const code = (error as NodeJS.ErrnoException).code;
      if (code === "ENOENT") throw new CorralError("NOT_FOUND", `log file "${this.path}" does not exist`);
      throw new CorralError(
        "PERMISSION_DENIED",
        `log file "${this.path}" cannot be opened (${code ?? "error"})`,
        {
          cause: error,
        },
      );
    }
    const info = await handle.stat();
    if (!info.isFile()) {
      await handle.close();
      throw new CorralError("PERMISSION_DENIED", `log file "${this.path}" is not a regular file`);
    }
    return { handle, real, ino: info.ino, dev: info.dev };
  }
}

async function readFully(handle: FileHandle, buffer: Buffer, position: number): Promise<void> {
  let offset = 0;
  while (offset < buffer.length) {
    const { bytesRead } = await handle.read(buffer, offset, buffer.length - offset, position + offset);
    if (bytesRead === 0) {
      buffer.fill(0x0a, offset);
      return;
    }
    offset += bytesRead;
  }
}

function trimCr(bytes: Buffer): Buffer {
  return bytes.length > 0 && bytes[bytes.length - 1] === 0x0d ? bytes.subarray(0, -1) : bytes;
}

const months = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];
const isoStamp = /^(\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}:\d{2}(?:\.\d+)?(?:Z|[+-]\d{2}:?\d{2})?)\s/;
const bsdStamp = /^([A-Z][a-z]{2}) {1,2}(\d{1,2}) (\d{2}):(\d{2}):(\d{2})\s/;
const levelWord =
  /\b(FATAL|PANIC|EMERG|ALERT|CRIT|CRITICAL|ERROR|ERR|WARN|WARNING|NOTICE|INFO|DEBUG|TRACE)\b|\b(fatal|panic|error|warn|warning|debug|trace)\b|<(emerg|alert|crit|err|warning|notice|info|debug)>/;

/**
 * One line of a text log as an entry: JSON lines (pino) keep their level, time and fields; syslog
 * lines get their time from an RFC 3339 or BSD stamp and a level from the first level word in them.
 * `dated` says whether the time came from the line itself.
 */
export function parseTextLine(
  bytes: Buffer,
  cut: boolean,
  source: string,
  fallbackTimestamp: number,
): { entry: LogEntry; dated: boolean } {
  const line = bytes.toString("utf8");
  if (line.startsWith("{")) {
    const parsed = parseJsonLogLine(line, source, Number.POSITIVE_INFINITY, fallbackTimestamp);
    if (parsed !== undefined && (parsed.message !== "" || Object.keys(parsed.fields).length > 0)) {
      const fields = cut ? { ...parsed.fields, truncated: "true" } : parsed.fields;
      return { entry: { ...parsed, fields }, dated: parsed.timestamp !== fallbackTimestamp };
    }
  }
  let timestamp: number | undefined;
  const iso = isoStamp.exec(line);
  if (iso?.[1] !== undefined) {
    const t = Date.parse(iso[1].replace(" ", "T"));
    if (Number.isFinite(t)) timestamp = t;
  } else {
    const bsd = bsdStamp.exec(line);
    if (bsd !== null) {
      const month = months.indexOf(bsd[1] ?? "");
      if (month >= 0) {
        const now = new Date();
        const at = new Date(
          now.getFullYear(),
          month,
          Number(bsd[2]),
          Number(bsd[3]),
          Number(bsd[4]),
          Number(bsd[5]),
        );
        // A December line read in January is from last year.
        if (at.getTime() > now.getTime() + 86_400_000) at.setFullYear(at.getFullYear() - 1);
        timestamp = at.getTime();
      }
    }
  }
  const word = levelWord.exec(line);
  const level: EntryLevel = (word && asEntryLevel(word[1] ?? word[2] ?? word[3] ?? "")) || "info";
  return {
    entry: {
      timestamp: timestamp ?? fallbackTimestamp,
      level,
      message: line,
      source,
      fields: cut ? { truncated: "true" } : {},
    },
    dated: timestamp !== undefined,
  };
}
