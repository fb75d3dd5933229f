/**
 * Server children of the heartbeat bench: each server runs in a Node process of its own (so its CPU is
 * its own), reports what it listens on over IPC, answers CPU questions over IPC, and dies with the
 * parent. This module also owns the bench's temp dirs: they are removed however the bench ends.
 */
import { type ChildProcess, execFileSync, fork } from "node:child_process";
import { once } from "node:events";
import { closeSync, openSync, readdirSync, readFileSync, rmSync } from "node:fs";

/** What a child sends its parent once it listens. */
export interface ReadyMessage {
  readonly ready: Record<string, unknown>;
}

interface CpuQuestion {
  readonly cpu: number;
}

interface CpuAnswer {
  readonly cpuAnswer: number;
  /** user + system µs, all threads (getrusage RUSAGE_SELF). */
  readonly us: number;
}

export interface ServerChild {
  readonly pid: number;
  readonly ready: ReadyMessage["ready"];
  /** Where the child's stderr (its logs) goes. */
  readonly logPath: string;
  /** The process's CPU time so far, µs: /proc/<pid>/stat read now, or the child's cpuUsage() over IPC. */
  cpuUs(): Promise<number | null>;
  /** How the CPU figures are taken. */
  readonly cpuSource: CpuSource;
  /** Resident memory now, MiB; null where /proc cannot be read. */
  rssMb(): number | null;
  /** SIGTERM, then SIGKILL after `graceMs`; resolves once the process is gone. */
  stop(graceMs?: number): Promise<void>;
}

export type CpuSource = "/proc/<pid>/task/<tid>/schedstat" | "/proc/<pid>/stat" | "cpuUsage() over IPC";

const children = new Set<ChildProcess>();
const tempDirs = new Set<string>();

/** Removes `dir` (recursively) when the bench ends, whichever way it ends. */
export function removeOnExit(dir: string): void {
  tempDirs.add(dir);
}

function gone(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    return stat.slice(stat.lastIndexOf(")") + 2).startsWith("Z");
  } catch {
    return true; // no such process (or no /proc to ask: then do not wait)
  }
}

/** Kills every child still running, waits (briefly) for them to go, then removes the temp dirs. */
function cleanUpNow(): void {
  const pids: number[] = [];
  for (const child of children) {
    if (child.pid !== undefined) pids.push(child.pid);
    child.kill("SIGKILL");
  }
  children.clear();
  // A killed child might still be writing into its data dir: wait until it has gone (at most 2 s).
  const deadline = Date.now() + 2_000;
  const pause = new Int32Array(new SharedArrayBuffer(4));
  while (pids.some((pid) => !gone(pid)) && Date.now() < deadline) Atomics.wait(pause, 0, 0, 20);
  for (const dir of tempDirs) rmSync(dir, { recursive: true, force: true });
  tempDirs.clear();
}

process.once("exit", cleanUpNow);
for (const signal of ["SIGINT", "SIGTERM", "SIGHUP"] as const) {
  process.once(signal, () => {
    console.error(`\n${signal}: stopping the servers and removing temp dirs`);
    cleanUpNow();
    process.exit(128 + (signal === "SIGINT" ? 2 : signal === "SIGTERM" ? 15 : 1));
  });
}

const clockTicks = (() => {
  try {
    return Number(execFileSync("getconf", ["CLK_TCK"], { encoding: "utf8" }).trim()) || 100;
  } catch {
    return 100;
  }
})();

/**
 * CPU time of every thread of the process, µs, from /proc/<pid>/task/<tid>/schedstat (nanoseconds, where
 * /proc/<pid>/stat counts in clock ticks of 10 ms: too coarse for 1 s slices at a few hundred ms of CPU).
 * Null where schedstat cannot be read. Threads that end inside a window take their time with them; Node's
 * threads (V8 platform, libuv pool) live as long as the process.
 */
export function schedCpuUs(pid: number): number | null {
  try {
    let ns = 0;
    for (const tid of readdirSync(`/proc/${pid}/task`)) {
      try {
        ns += Number(readFileSync(`/proc/${pid}/task/${tid}/schedstat`, "utf8").split(" ")[0]);
      } catch {
        // The thread ended between the listing and the read.
      }
    }
    return Number.isFinite(ns) && ns > 0 ? ns / 1000 : null;
  } catch {
    return null;
  }
}

/** utime + stime of the whole process (all threads), µs, in clock ticks; null where /proc cannot be read. */
export function procCpuUs(pid: number): number | null {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    return ((Number(fields[11]) + Number(fields[12])) * 1e6) / clockTicks;
  } catch {
    return null;
  }
}

function procRssMb(pid: number): number | null {
  try {
    const match = /^VmRSS:\s+(\d+) kB/m.exec(readFileSync(`/proc/${pid}/status`, "utf8"));
    return match?.[1] === undefined ? null : Number(match[1]) / 1024;
  } catch {
    return null;
  }
}

/**
 * Starts `script` (a .ts file, run through tsx) as a child, its stderr into `logPath`, and waits for its
 * ReadyMessage (at most `readyTimeoutMs`).
 */
export async function startChild(
  script: URL,
  args: readonly string[],
  logPath: string,
  readyTimeoutMs = 60_000,
): Promise<ServerChild> {
  const log = openSync(logPath, "a");
  let child: ChildProcess;
  try {
    child = fork(script, [...args], {
      // HEARTBEAT_BENCH_NODE_FLAGS: extra node flags for the servers, e.g. "--cpu-prof --cpu-prof-dir=/tmp/prof".
      execArgv: [
        "--import",
        "tsx",
        ...(process.env.HEARTBEAT_BENCH_NODE_FLAGS?.split(" ").filter(Boolean) ?? []),
      ],
      stdio: ["ignore", "inherit", log, "ipc"],
    });
  } finally {
    closeSync(log);
  }
  children.add(child);
  const name = script.pathname.slice(script.pathname.lastIndexOf("/") + 1);
  const pending = new Map<number, (us: number) => void>();
  let nextQuestion = 0;
  child.on("message", (message: Partial<CpuAnswer>) => {
    if (typeof message.cpuAnswer === "number" && typeof message.us === "number") {
      pending.get(message.cpuAnswer)?.(message.us);
      pending.delete(message.cpuAnswer);
    }
  });
  const exited = once(child, "exit").then(([code, signal]) => {
    throw new Error(`${name} exited before it was ready (code ${code}, signal ${signal}); see ${logPath}`);
  });
  const ready = (async () => {
    for (;;) {
      const [message] = (await once(child, "message")) as [Partial<ReadyMessage>];
      if (message.ready) return message.ready;
    }
  })();
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(
      () => reject(new Error(`${name} not ready after ${readyTimeoutMs / 1000} s`)),
      readyTimeoutMs,
    );
  });
  try {
    const message = await Promise.race([ready, exited, timeout]);
    const pid = child.pid;
    if (pid === undefined) throw new Error(`${name} has no pid`);
    const cpuSource: CpuSource =
      schedCpuUs(pid) !== null
        ? "/proc/<pid>/task/<tid>/schedstat"
        : procCpuUs(pid) !== null
          ? "/proc/<pid>/stat"
          : "cpuUsage() over IPC";
    const askIpc = () =>
      new Promise<number | null>((resolve) => {
        if (!child.connected) {
          resolve(null);
          return;
        }
        const id = nextQuestion++;
        const giveUp = setTimeout(() => {
          pending.delete(id);
          resolve(null);
        }, 5_000);
        pending.set(id, (us) => {
          clearTimeout(giveUp);
          resolve(us);
        });
        child.send({ cpu: id } satisfies CpuQuestion);
      });
    return {
      pid,
      ready: message,
      logPath,
      cpuSource,
      // /proc is read synchronously, at the moment of the call: no IPC round trip skews the window.
      cpuUs: () =>
        cpuSource === "/proc/<pid>/task/<tid>/schedstat"
          ? Promise.resolve(schedCpuUs(pid))
          : cpuSource === "/proc/<pid>/stat"
            ? Promise.resolve(procCpuUs(pid))
            : askIpc(),
      rssMb: () => procRssMb(pid),
      stop: async (graceMs = 5_000) => {
        if (!children.delete(child)) return;
        if (child.exitCode !== null || child.signalCode !== null) return;
        const exit = once(child, "exit");
        child.kill("SIGTERM");
        const kill = setTimeout(() => child.kill("SIGKILL"), graceMs);
        await exit;
        clearTimeout(kill);
      },
    };
  } catch (error) {
    children.delete(child);
    child.kill("SIGKILL");
    throw error;
  } finally {
    clearTimeout(timer);
    exited.catch(() => {});
  }
}

/**
 * In a child: tell the parent we listen, answer its CPU questions, and exit when the parent goes away.
 * `onStop` runs on SIGTERM (a graceful stop) before the process exits.
 */
export function serveParent(
  ready: ReadyMessage["ready"],
  onStop: () => Promise<void> = async () => {},
): void {
  const send = process.send?.bind(process);
  if (send === undefined)
    throw new Error("a bench server must be started by the bench (it reports over IPC)");
  process.on("message", (message: Partial<CpuQuestion>) => {
    if (typeof message.cpu !== "number") return;
    const usage = process.cpuUsage();
    send({ cpuAnswer: message.cpu, us: usage.user + usage.system } satisfies CpuAnswer);
  });
  process.on("disconnect", () => process.exit(0));
  let stopping = false;
  process.on("SIGTERM", () => {
    if (stopping) return;
    stopping = true;
    const force = setTimeout(() => process.exit(0), 4_000);
    force.unref();
    onStop().then(
      () => process.exit(0),
      () => process.exit(1),
    );
  });
  send({ ready } satisfies ReadyMessage);
}
