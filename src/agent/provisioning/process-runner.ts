import { spawn } from "node:child_process";
import { StringDecoder } from "node:string_decoder";
import type { ProcessRecorder } from "../../host/process-ledger.ts";
import { launchSpec, type RunAs, resolveRunAs } from "../../host/run-as.ts";

/**
 * Runs one program for a provisioning step: argv straight to execve (never a shell), in a process
 * group of its own so that a timeout or a cancellation kills everything it started (SIGTERM to the
 * group, SIGKILL after a grace period). stdout and stderr are handed on as text as they come.
 *
 * Nothing it starts outlives the step: when the step ends, however it ends, whatever is left in the
 * group is killed before the result is answered; the program gets a parent-death signal (it dies with
 * the agent); and the group is in the data dir's ledger until then, so an agent restarted after a
 * kill -9 reaps what is left.
 */
export interface ProcessOptions {
  readonly argv: readonly string[];
  readonly cwd?: string;
  readonly env?: Readonly<Record<string, string>>;
  readonly timeoutMs: number;
  readonly killGraceMs: number;
  readonly signal: AbortSignal;
  /** stdout and stderr, interleaved as they arrive. */
  readonly onOutput?: (text: string) => void;
  /** Who the program runs as; by default the "auto" rule (`nobody` when the agent is root). */
  readonly runAs?: RunAs;
  readonly recorder?: ProcessRecorder;
}

export interface ProcessResult {
  /** null when the process was killed by a signal or never started. */
  readonly exitCode: number | null;
  readonly killedBy: NodeJS.Signals | null;
  readonly timedOut: boolean;
  readonly cancelled: boolean;
  /** Set when the program could not be started (not found, not executable, bad cwd). */
  readonly spawnError?: string;
  /** The last non-empty line of output, for one-line messages. */
  readonly lastLine: string;
}

/** After the program exits, output pipes still held open by something it left behind are closed after this. */
const pipeDrainMs = 2_000;

export function runProcess(options: ProcessOptions): Promise<ProcessResult> {
  return new Promise((resolve) => {
    const program = options.argv[0];
    if (program === undefined || program === "") {
      resolve({
        exitCode: null,
        killedBy: null,
        timedOut: false,
        cancelled: false,
        spawnError: "no program given",
        lastLine: "",
      });
      return;
    }
    if (options.signal.aborted) {
      resolve({ exitCode: null, killedBy: null, timedOut: false, cancelled: true, lastLine: "" });
      return;
    }
    let tail = "";
    const output = (text: string) => {
      if (text === "") return;
      tail = (tail + text).slice(-2048);
      options.onOutput?.(text);
    };
    let runAs: RunAs;
    try {
      runAs = options.runAs ?? resolveRunAs();
    } catch (error) {
      resolve({
        exitCode: null,
        killedBy: null,
        timedOut: false,
        cancelled: false,
        spawnError: `cannot run ${program}: ${(error as Error).message}`,
        lastLine: "",
      });
      return;
    }
    const launch = launchSpec({
      argv: options.argv,
      runAs,
      ...(options.env === undefined ? {} : { env: options.env }),
      ...(options.cwd === undefined ? {} : { cwd: options.cwd }),
    });
    const child = spawn(launch.file, launch.args, {
      ...launch.options,
      stdio: ["ignore", "pipe", "pipe"],
      detached: true,
      shell: false,
      windowsHide: true,
    });
    if (child.pid !== undefined) options.recorder?.record(child.pid, "provisioning step");
    const decoders = [new StringDecoder("utf8"), new StringDecoder("utf8")] as const;
    child.stdout.on("data", (chunk: Buffer) => output(decoders[0].write(chunk)));
    child.stderr.on("data", (chunk: Buffer) => output(decoders[1].write(chunk)));

    let timedOut = false;
    let cancelled = false;
    let killing = false;
    let settled = false;
    let exit: { code: number | null; signal: NodeJS.Signals | null } | undefined;
    let killTimer: NodeJS.Timeout | undefined;
    let drainTimer: NodeJS.Timeout | undefined;

    const signalGroup = (signal: NodeJS.Signals) => {
      if (child.pid === undefined) return;
      try {
        process.kill(-child.pid, signal);
      } catch {
        // The group is gone already.
      }
    };
    const kill = () => {
      if (killing) return;
      killing = true;
      signalGroup("SIGTERM");
      killTimer = setTimeout(() => signalGroup("SIGKILL"), options.killGraceMs);
    };
    const timeout = setTimeout(() => {
      timedOut = true;
      kill();
    }, options.timeoutMs);
    const onAbort = () => {
      cancelled = true;
      kill();
    };
    options.signal.addEventListener("abort", onAbort, { once: true });

    const finish = (spawnError?: string) => {
      if (settled) return;
      settled = true;
      clearTimeout(timeout);
      clearTimeout(drainTimer);
      clearTimeout(killTimer);
      options.signal.removeEventListener("abort", onAbort);
      // Whatever the group still holds dies with the step, before anyone hears the step ended.
      signalGroup("SIGKILL");
      if (child.pid !== undefined) options.recorder?.forget(child.pid);
      output(decoders[0].end());
      output(decoders[1].end());
      child.stdout.destroy();
      child.stderr.destroy();
      const lastLine =
        tail
          .split(/\r?\n/)
          .map((line) => line.trim())
          .filter((line) => line !== "")
          .at(-1) ?? "";
      resolve({
        exitCode: exit?.code ?? null,
        killedBy: exit?.signal ?? null,
        timedOut,
        cancelled,
        ...(spawnError === undefined ? {} : { spawnError }),
        lastLine: lastLine.slice(0, 300),
      });
    };
    child.once("error", (error: NodeJS.ErrnoException) => {
      const reason =
        error.code === "ENOENT"
          ? options.cwd !== undefined && error.path === undefined
            ? `cannot run ${program} in ${options.cwd}: no such program or directory`
            : `cannot run ${program}: no such program (searched PATH)`
          : error.code === "EACCES"
            ? `cannot run ${program}: permission denied`
            : `cannot run ${program}: ${error.message}`;
      finish(reason);
    });
    child.once("exit", (code, signal) => {
      exit = { code, signal };
      drainTimer = setTimeout(() => finish(), pipeDrainMs);
    });
    child.once("close", () => finish());
  });
}

/** One line about how a process ended: "exit code 2: <last line>", "timed out after 30s", … */
export function describeExit(result: ProcessResult, timeoutMs: number): string {
  const last = result.lastLine === "" ? "" : `: ${result.lastLine}`;
  if (result.spawnError !== undefined) return result.spawnError;
  if (result.cancelled) return "cancelled: the process group was killed";
  if (result.timedOut)
    return `timed out after ${Math.round(timeoutMs / 100) / 10}s; the process group was killed${last}`;
  if (result.killedBy !== null) return `killed by ${result.killedBy}${last}`;
  return `exit code ${result.exitCode}${last}`;
}
