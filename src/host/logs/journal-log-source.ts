import { spawn } from "node:child_process";
import { constants as fsConstants } from "node:fs";
import { access, readdir, stat } from "node:fs/promises";
import { join } from "node:path";
import { parseDuration } from "../../base/duration.ts";
import { CorralError } from "../../base/errors.ts";
import { defaults } from "../../defaults.ts";
import { runProcess } from "../run-process.ts";
import { LineSplitter } from "./line-splitter.ts";
import { compileQuery, type EntryLevel, type LogEntry, type LogQuery, type LogSource } from "./log-source.ts";

export interface JournalOptions {
  /** Absolute path of journalctl. */
  readonly journalctl: string;
  readonly tailTimeoutMs?: number;
  readonly tailMaxBytes?: number;
  readonly maxLineBytes?: number;
}

const priorityOfLevel: Readonly<Record<string, string>> = { debug: "7", info: "6", warn: "4", error: "3" };
const levelOfPriority: readonly EntryLevel[] = [
  "fatal",
  "fatal",
  "fatal",
  "error",
  "warn",
  "info",
  "info",
  "debug",
];
/** Journal fields passed on as entry fields. */
const keptFields: Readonly<Record<string, string>> = {
  _SYSTEMD_UNIT: "unit",
  SYSLOG_IDENTIFIER: "identifier",
  _PID: "pid",
  _COMM: "comm",
  _HOSTNAME: "hostname",
  PRIORITY: "priority",
};

/**
 * Is there a systemd journal on this node? journalctl in the safe PATH, and journald running
 * (/run/systemd/journal) or a persistent journal with files in it (/var/log/journal).
 */
export async function detectJournal(
  options: { safePath?: string; runDir?: string; persistentDir?: string } = {},
): Promise<string | undefined> {
  const safePath = options.safePath ?? defaults.agentDiagnostics.exec.safePath;
  let journalctl: string | undefined;
  for (const dir of safePath.split(":")) {
    const candidate = join(dir, "journalctl");
    try {
      await access(candidate, fsConstants.X_OK);
      journalctl = candidate;
      break;
    } catch {
      // next directory
    }
  }
  if (journalctl === undefined) return undefined;
  const running = await stat(options.runDir ?? "/run/systemd/journal")
    .then((s) => s.isDirectory())
    .catch(() => false);
  if (running) return journalctl;
  const persistent = await readdir(options.persistentDir ?? "/var/log/journal")
    .then((names) => names.length > 0)
    .catch(() => false);
  return persistent ? journalctl : undefined;
}

/** The systemd journal, read with `journalctl -o json` (argv, never a shell). */
export class JournalLogSource implements LogSource {
  readonly #journalctl: string;
  readonly #tailTimeoutMs: number;
  readonly #tailMaxBytes: number;
  readonly #maxLineBytes: number;

  constructor(options: JournalOptions) {
    const d = defaults.agentDiagnostics.logs;
    this.#journalctl = options.journalctl;
    this.#tailTimeoutMs = options.tailTimeoutMs ?? parseDuration(d.journalTailTimeout, "journalTailTimeout");
    this.#tailMaxBytes = options.tailMaxBytes ?? d.journalTailMaxBytes;
    this.#maxLineBytes = options.maxLineBytes ?? d.maxLineBytes;
  }

  async tail(n: number, query: LogQuery): Promise<LogEntry[]> {
    if (n <= 0) return [];
    // journalctl filters level and time itself; `contains` is applied here, so more lines are read.
    const lines = query.contains ? defaults.agentDiagnostics.logs.maxTail : n;
    // Newest first (-r), so that the output cap, if reached, drops the oldest.
    const result = await runProcess({
      file: this.#journalctl,
      argv: ["-o", "json", "--no-pager", "-q", "-r", "-n", String(lines), ...filterArgs(query)],
      timeoutMs: this.#tailTimeoutMs,
      maxOutputBytes: this.#tailMaxBytes,
      env: { PATH: defaults.agentDiagnostics.exec.safePath, LANG: "C.UTF-8" },
    });
    if (result.exitCode !== 0 && result.stdout.length === 0) {
      throw new CorralError(
        "UNAVAILABLE",
        `journalctl failed (exit ${result.exitCode}): ${result.stderr.toString("utf8").trim().slice(0, 200)}`,
      );
    }
    const matches = compileQuery(query);
    const newestFirst: LogEntry[] = [];
    const splitter = new LineSplitter(this.#maxLineBytes * 4);
    for (const line of [...splitter.push(result.stdout), ...splitter.flush()]) {
      const entry = parseJournalLine(line.bytes, this.#maxLineBytes);
      if (entry !== undefined && matches(entry)) newestFirst.push(entry);
      if (newestFirst.length >= n) break;
    }
    return newestFirst.reverse();
  }

  follow(query: LogQuery, signal: AbortSignal): AsyncIterable<LogEntry> {
    return { [Symbol.asyncIterator]: () => this.#follow(query, signal) };
  }

  async *#follow(query: LogQuery, signal: AbortSignal): AsyncGenerator<LogEntry> {
    if (signal.aborted) return;
    const child = spawn(
      this.#journalctl,
      ["-o", "json", "--no-pager", "-q", "-f", "-n", "0", ...filterArgs(query)],
      {
        shell: false,
        detached: true,
        stdio: ["ignore", "pipe", "ignore"],
        env: { PATH: defaults.agentDiagnostics.exec.safePath, LANG: "C.UTF-8" },
        cwd: "/",
      },
    );
    const kill = () => {
      if (child.pid === undefined) return;
      try {
        process.kill(-child.pid, "SIGKILL");
      } catch {
        // gone already
      }
    };
    signal.addEventListener("abort", kill, { once: true });
    const failed = new Promise<never>((_, reject) => {
      child.once("error", (error) => reject(new CorralError("UNAVAILABLE", `journalctl: ${error.message}`)));
    });
    failed.catch(() => {});
    const matches = compileQuery(query);
    const splitter = new LineSplitter(this.#maxLineBytes * 4);
    try {
      const chunks = child.stdout[Symbol.asyncIterator]() as AsyncIterator<Buffer>;
      for (;;) {
        const step = await Promise.race([chunks.next(), failed]);
        if (step.done || signal.aborted) break;
        for (const line of splitter.push(step.value)) {
          const entry = parseJournalLine(line.bytes, this.#maxLineBytes);
          if (entry !== undefined && matches(entry)) yield entry;
        }
      }
    } finally {
      signal.removeEventListener("abort", kill);
      kill();
      child.stdout.destroy();
    }
  }
}

function filterArgs(query: LogQuery): string[] {
  const args: string[] = [];
  if (query.minLevel !== undefined) args.push("-p", priorityOfLevel[query.minLevel] ?? "7");
  if (query.since !== undefined && query.since > 0)
    args.push("--since", `@${Math.floor(query.since / 1000)}`);
  return args;
}

/** One `journalctl -o json` line as an entry. */
export function parseJournalLine(bytes: Buffer, maxLineBytes: number): LogEntry | undefined {
  let record: Record<string, unknown>;
  try {
    const parsed: unknown = JSON.parse(bytes.toString("utf8"));
    if (parsed === null || typeof parsed !== "object" || Array.isArray(parsed)) return undefined;
    record = parsed as Record<string, unknown>;
  } catch {
    return undefined;
  }
  const micros = Number(record.__REALTIME_TIMESTAMP);
  const priority = Number(record.PRIORITY);
  let message = record.MESSAGE;
  // Binary messages come as arrays of bytes.
  if (Array.isArray(message))
    message = Buffer.from(message.filter((b): b is number => typeof b === "number")).toString("utf8");
  let text =
    typeof message === "string" ? message : message === undefined || message === null ? "" : String(message);
  const fields: Record<string, string> = {};
  if (Buffer.byteLength(text) > maxLineBytes) {
    text = Buffer.from(text).subarray(0, maxLineBytes).toString("utf8");
    fields.truncated = "true";
  }
  for (const [key, name] of Object.entries(keptFields)) {
    const value = record[key];
    if (typeof value === "string") fields[name] = value.slice(0, 256);
  }
  return {
    timestamp: Number.isFinite(micros) ? Math.floor(micros / 1000) : Date.now(),
    level:
      Number.isInteger(priority) && priority >= 0 && priority <= 7
        ? (levelOfPriority[priority] ?? "info")
        : "info",
    message: text,
    source: "journal",
    fields,
  };
}
