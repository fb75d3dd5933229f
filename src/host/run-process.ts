import { spawn } from "node:child_process";
import { constants } from "node:os";
import { performance } from "node:perf_hooks";

export interface RunProcessOptions {
  /** Absolute path of the program; never interpreted by a shell. */
  readonly file: string;
  readonly argv: readonly string[];
  readonly timeoutMs: number;
  /** Per stream; more is read and dropped, and `truncated` is set. */
  readonly maxOutputBytes: number;
  readonly env: Readonly<Record<string, string>>;
  readonly cwd?: string;
  /** Aborting kills the process group (the caller went away). */
  readonly signal?: AbortSignal;
  /** Told the process id (which is also its process group id) once it runs. */
  readonly onSpawn?: (pid: number) => void;
}

export interface RunProcessResult {
  /** The exit status, or 128 + the signal's number when a signal ended it. */
  readonly exitCode: number;
  readonly signal: NodeJS.Signals | null;
  readonly stdout: Buffer;
  readonly stderr: Buffer;
  readonly truncated: boolean;
  readonly timedOut: boolean;
  readonly cancelled: boolean;
  readonly durationMs: number;
  readonly pid: number;
}

/**
 * How long after the program exits its output pipes may stay open (a grandchild in a group of its own
 * holding them) before they are closed from this side.
 */
const closeGraceMs = 500;

/**
 * Runs a program as the leader of a new process group (`detached`), so that a timeout or a cancelled
 * call kills everything it started, not only the program itself. stdin is closed, the environment is
 * only what the caller gives, output is capped, and whatever is left of the group when the program
 * exits is killed too: a diagnostic command leaves nothing behind.
 * Rejects only when the program could not be started (ENOENT, EACCES).
 */
export function runProcess(options: RunProcessOptions): Promise<RunProcessResult> {
  return new Promise((resolve, reject) => {
    const started = performance.now();
    const child = spawn(options.file, [...options.argv], {
      shell: false,
      detached: true,
      stdio: ["ignore", "pipe", "pipe"],
      env: { ...options.env },
      cwd: options.cwd ?? "/",
      windowsHide: true,
    });
    let truncated = false;
    let timedOut = false;
    let cancelled = false;
    let settled = false;
    let exit: { code: number | null; signal: NodeJS.Signals | null } | undefined;
    let graceTimer: NodeJS.Timeout | undefined;
    const collect = () => {
      const chunks: Buffer[] = [];
      let size = 0;
      return {
        chunks,
        add(chunk: Buffer) {
          const room = options.maxOutputBytes - size;
          if (chunk.length > room) truncated = true;
          if (room <= 0) return;
          const kept = chunk.length > room ? chunk.subarray(0, room) : chunk;
          chunks.push(kept);
          size += kept.length;
        },
      };
    };
    const out = collect();
    const err = collect();
    child.stdout.on("data", out.add);
    child.stderr.on("data", err.add);

    const killGroup = () => {
      if (child.pid === undefined) return;
      try {
        process.kill(-child.pid, "SIGKILL");
      } catch {
        // ESRCH: the group is gone already.
      }
    };
    const timer = setTimeout(() => {
      timedOut = true;
      killGroup();
    }, options.timeoutMs);
    const onAbort = () => {
      cancelled = true;
      killGroup();
    };
    options.signal?.addEventListener("abort", onAbort, { once: true });

    const cleanup = () => {
      clearTimeout(timer);
      if (graceTimer !== undefined) clearTimeout(graceTimer);
      options.signal?.removeEventListener("abort", onAbort);
    };
    const finish = () => {
      if (settled) return;
      settled = true;
      cleanup();
      const code = exit?.code ?? null;
      const signal = exit?.signal ?? null;
      resolve({
        exitCode: code ?? (signal ? 128 + (constants.signals[signal] ?? 0) : -1),
        signal,
        stdout: Buffer.concat(out.chunks),
        stderr: Buffer.concat(err.chunks),
        truncated,
        timedOut,
        cancelled,
        durationMs: Math.round(performance.now() - started),
        pid: child.pid ?? -1,
      });
    };

    child.once("error", (error) => {
      // Only a failed start leaves no pid; errors after that (a failed kill) are not fatal.
      if (child.pid !== undefined || settled) return;
      settled = true;
      cleanup();
      reject(error);
    });
    child.once("spawn", () => {
      if (child.pid !== undefined) options.onSpawn?.(child.pid);
      if (options.signal?.aborted) onAbort();
    });
    child.once("exit", (code, signal) => {
      exit = { code, signal };
      // Anything the program left running in its group dies with it.
      killGroup();
      graceTimer = setTimeout(() => {
        child.stdout.destroy();
        child.stderr.destroy();
        finish();
      }, closeGraceMs);
    });
    child.once("close", (code, signal) => {
      exit ??= { code, signal };
      finish();
    });
  });
}
