import { randomUUID } from "node:crypto";
import { constants as fsConstants } from "node:fs";
import { access, stat } from "node:fs/promises";
import { join } from "node:path";
import { parseDuration } from "../../../../base/duration.ts";
import { CorralError } from "../../../../base/errors.ts";
import { defaults } from "../../../../defaults.ts";
import { runProcess } from "../../../../host/run-process.ts";
import { createLogger, type Logger } from "../../../../observability/logger.ts";
import {
  type CommandAllowList,
  type CommandSpec,
  checkInvocation,
  compileAllowList,
  defaultCommands,
  Refusal,
} from "../../../../security/exec-allow-list.ts";

/** How a run (or a refusal) ended, as the audit record says it. */
export type ExecOutcome = "ok" | "nonzero" | "timed_out" | "cancelled" | "denied" | "error";

/** One audit record: every request, allowed or refused. */
export interface ExecAuditEntry {
  readonly id: string;
  /** Milliseconds since the Unix epoch when the request arrived. */
  readonly at: number;
  readonly command: string;
  readonly args: readonly string[];
  readonly outcome: ExecOutcome;
  readonly exitCode?: number;
  readonly durationMs?: number;
  /** Why it was refused or failed. */
  readonly reason?: string;
  /** Who asked (`admin:alice`, `controller:…`), when the caller said. */
  readonly caller?: string;
  readonly truncated?: boolean;
}

/** Where audit records go; the agent provides one (the default logs them). */
export type ExecAuditSink = (entry: ExecAuditEntry) => void;

export interface ExecRequest {
  readonly command: string;
  readonly args: readonly string[];
  /** 0 or absent: the command's own timeout or the agent's default. Capped by `maxTimeoutMs`. */
  readonly timeoutMs?: number;
  readonly signal?: AbortSignal;
  readonly caller?: string;
}

export interface ExecResult {
  readonly exitCode: number;
  readonly stdout: string;
  readonly stderr: string;
  readonly truncated: boolean;
  readonly timedOut: boolean;
  readonly durationMs: number;
  readonly auditId: string;
}

export interface CommandExecutorOptions {
  /** Replaces the whole allow-list (start from `defaultCommands` to extend it). */
  readonly commands?: CommandAllowList;
  readonly audit?: ExecAuditSink;
  /** Used by the default audit sink. */
  readonly logger?: Logger;
  readonly safePath?: string;
  readonly defaultTimeoutMs?: number;
  readonly maxTimeoutMs?: number;
  readonly maxOutputBytes?: number;
  readonly maxArgLength?: number;
  /** Told each run's process (group) id; for tests. */
  readonly onSpawn?: (pid: number, command: string) => void;
}

/**
 * ExecuteCommand's engine: checks a request against the allow-list, runs the command as argv in a
 * process group of its own with a reduced environment, a timeout, and capped output, and writes an
 * audit record for every request.
 */
export class CommandExecutor {
  readonly #table: ReadonlyMap<string, CommandSpec>;
  readonly #audit: ExecAuditSink;
  readonly #safePath: string;
  readonly #defaultTimeoutMs: number;
  readonly #maxTimeoutMs: number;
  readonly #maxOutputBytes: number;
  readonly #maxArgLength: number;
  readonly #onSpawn: ((pid: number, command: string) => void) | undefined;
  /** Resolved program paths, looked up once per command. */
  readonly #resolved = new Map<string, Promise<string | undefined>>();

  constructor(options: CommandExecutorOptions = {}) {
    const d = defaults.agentDiagnostics.exec;
    this.#table = compileAllowList(options.commands ?? defaultCommands);
    const logger = options.logger;
    this.#audit = options.audit ?? ((entry) => logAudit(logger, entry));
    this.#safePath = options.safePath ?? d.safePath;
    this.#defaultTimeoutMs = options.defaultTimeoutMs ?? parseDuration(d.defaultTimeout, "defaultTimeout");
    this.#maxTimeoutMs = options.maxTimeoutMs ?? parseDuration(d.maxTimeout, "maxTimeout");
    this.#maxOutputBytes = options.maxOutputBytes ?? d.maxOutputBytes;
    this.#maxArgLength = options.maxArgLength ?? d.maxArgLength;
    this.#onSpawn = options.onSpawn;
  }

  /** The allowed commands, with how each is called. */
  get commands(): { name: string; description: string }[] {
    return [...this.#table].map(([name, spec]) => ({ name, description: spec.description }));
  }

  /**
   * Runs an allowed command. Throws PERMISSION_DENIED (naming the allowed commands) for anything the
   * allow-list does not allow, FAILED_PRECONDITION when an allowed command is not installed here.
   * A run that fails, times out or is cut is a result, not an error.
   */
  async execute(request: ExecRequest): Promise<ExecResult> {
    const id = randomUUID();
    const at = Date.now();
    const args = [...request.args];
    const base = {
      id,
      at,
      command: request.command,
      args,
      ...(request.caller !== undefined ? { caller: request.caller } : {}),
    };
    const checked = checkInvocation(this.#table, request.command, args, { maxArgLength: this.#maxArgLength });
    if (checked instanceof Refusal) {
      this.#record({ ...base, outcome: "denied", reason: checked.reason });
      throw new CorralError(
        "PERMISSION_DENIED",
        `${checked.reason}. Allowed commands: ${[...this.#table.keys()].join(", ")}`,
        { details: { audit_id: id, command: request.command } },
      );
    }
    const file = await this.#resolve(checked.name, checked.spec);
    if (file === undefined) {
      const reason = `${checked.name} is allowed but not installed on this node (looked in ${this.#safePath})`;
      this.#record({ ...base, outcome: "error", reason });
      throw new CorralError("FAILED_PRECONDITION", reason, { details: { audit_id: id } });
    }
    const timeoutMs =
      request.timeoutMs !== undefined && request.timeoutMs > 0
        ? Math.min(request.timeoutMs, this.#maxTimeoutMs)
        : (checked.spec.timeoutMs ?? this.#defaultTimeoutMs);
    let result: Awaited<ReturnType<typeof runProcess>>;
    try {
      result = await runProcess({
        file,
        argv: checked.argv,
        timeoutMs,
        maxOutputBytes: this.#maxOutputBytes,
        env: { PATH: this.#safePath, LANG: "C.UTF-8" },
        ...(request.signal ? { signal: request.signal } : {}),
        ...(this.#onSpawn ? { onSpawn: (pid: number) => this.#onSpawn?.(pid, checked.name) } : {}),
      });
    } catch (error) {
      const reason = `${checked.name} could not be started: ${error instanceof Error ? error.message : String(error)}`;
      this.#record({ ...base, outcome: "error", reason });
      throw new CorralError("FAILED_PRECONDITION", reason, { cause: error, details: { audit_id: id } });
    }
    const outcome: ExecOutcome = result.timedOut
      ? "timed_out"
      : result.cancelled
        ? "cancelled"
        : result.exitCode === 0
          ? "ok"
          : "nonzero";
    this.#record({
      ...base,
      outcome,
      exitCode: result.exitCode,
      durationMs: result.durationMs,
      truncated: result.truncated,
    });
    return {
      exitCode: result.exitCode,
      stdout: result.stdout.toString("utf8"),
      stderr: result.stderr.toString("utf8"),
      truncated: result.truncated,
      timedOut: result.timedOut,
      durationMs: result.durationMs,
      auditId: id,
    };
  }

  #record(entry: ExecAuditEntry): void {
    try {
      this.#audit(entry);
    } catch {
      // An audit sink that throws must not turn a finished run into an error.
    }
  }

  #resolve(name: string, spec: CommandSpec): Promise<string | undefined> {
    let found = this.#resolved.get(name);
    if (found === undefined) {
      found =
        spec.path !== undefined
          ? isExecutable(spec.path).then((ok) => (ok ? spec.path : undefined))
          : this.#lookup(spec.binary ?? name);
      this.#resolved.set(name, found);
      // A command missing now may be installed later: only hits are kept.
      void found.then((file) => {
        if (file === undefined) this.#resolved.delete(name);
      });
    }
    return found;
  }

  async #lookup(binary: string): Promise<string | undefined> {
    for (const dir of this.#safePath.split(":")) {
      if (!dir.startsWith("/")) continue;
      const candidate = join(dir, binary);
      if (await isExecutable(candidate)) return candidate;
    }
    return undefined;
  }
}

async function isExecutable(file: string): Promise<boolean> {
  try {
    await access(file, fsConstants.X_OK);
    return (await stat(file)).isFile();
  } catch {
    return false;
  }
}

function logAudit(logger: Logger | undefined, entry: ExecAuditEntry): void {
  const log = logger ?? fallbackLogger();
  if (entry.outcome === "denied") log.warn({ audit: entry }, "diagnostic command refused");
  else log.info({ audit: entry }, "diagnostic command ran");
}

let fallback: Logger | undefined;
function fallbackLogger(): Logger {
  fallback ??= createLogger({ name: "exec-audit" });
  return fallback;
}
