/**
 * Bench server children: each server runs in its own Node process (so its CPU can be read from
 * /proc/<pid>/stat without the load generator's), reports its port over IPC, and dies with the parent.
 */
import { type ChildProcess, fork } from "node:child_process";
import { once } from "node:events";

/** A server under test, running in a process of its own. */
export interface BenchTarget {
  /** `127.0.0.1:<port>` */
  readonly address: string;
  /** The process whose CPU is measured. */
  readonly pid: number;
  close(): Promise<void>;
}

/** What a child sends its parent once it listens. */
export interface ReadyMessage {
  readonly ready: { readonly port: number } & Record<string, unknown>;
}

const children = new Set<ChildProcess>();

function killAll(): void {
  for (const child of children) child.kill("SIGKILL");
  children.clear();
}

process.once("exit", killAll);
for (const signal of ["SIGINT", "SIGTERM", "SIGHUP"] as const) {
  process.once(signal, () => {
    killAll();
    process.exit(128 + (signal === "SIGINT" ? 2 : signal === "SIGTERM" ? 15 : 1));
  });
}

/**
 * Starts `script` (a .ts file, run through tsx) as a child and waits for its ReadyMessage.
 * Returns the target and the rest of the ready message (for targets that report more than a port).
 */
export async function startChild(
  script: URL,
  args: readonly string[] = [],
): Promise<{ target: BenchTarget; ready: ReadyMessage["ready"] }> {
  const child = fork(script, [...args], {
    // RPC_BENCH_NODE_FLAGS: extra node flags for the servers, e.g. "--cpu-prof --cpu-prof-dir=/tmp/prof".
    execArgv: ["--import", "tsx", ...(process.env.RPC_BENCH_NODE_FLAGS?.split(" ").filter(Boolean) ?? [])],
    stdio: ["ignore", "inherit", "inherit", "ipc"],
  });
  children.add(child);
  const exited = once(child, "exit").then(([code, signal]) => {
    throw new Error(`${script.pathname} exited before it was ready (code ${code}, signal ${signal})`);
  });
  const ready = (async () => {
    for (;;) {
      const [message] = (await once(child, "message")) as [Partial<ReadyMessage>];
      if (message.ready) return message.ready;
    }
  })();
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${script.pathname} not ready after 30 s`)), 30_000);
  });
  try {
    const message = await Promise.race([ready, exited, timeout]);
    const pid = child.pid;
    if (pid === undefined) throw new Error(`${script.pathname} has no pid`);
    const target: BenchTarget = {
      address: `127.0.0.1:${message.port}`,
      pid,
      close: async () => {
        if (!children.delete(child)) return;
        if (child.exitCode !== null || child.signalCode !== null) return;
        const gone = once(child, "exit");
        child.kill("SIGTERM");
        const kill = setTimeout(() => child.kill("SIGKILL"), 2_000);
        await gone;
        clearTimeout(kill);
      },
    };
    return { target, ready: message };
  } catch (error) {
    children.delete(child);
    child.kill("SIGKILL");
    throw error;
  } finally {
    clearTimeout(timer);
    exited.catch(() => {});
  }
}

/** In a child: tell the parent we listen, and exit when the parent goes away. */
export function reportReady(ready: ReadyMessage["ready"]): void {
  if (!process.send) throw new Error("a bench server must be started by the bench (it reports over IPC)");
  process.on("disconnect", () => process.exit(0));
  process.on("SIGTERM", () => process.exit(0));
  process.send({ ready } satisfies ReadyMessage);
}
