/**
 * The bench controller (controller-child.ts) as a child process this process can ask for its figures
 * over IPC: event-loop delay, RSS, heap, CPU, and a timed RemoveNode.
 */
import { type ChildProcess, fork } from "node:child_process";
import { once } from "node:events";

export interface Probe {
  readonly maxDelayMs: number;
  readonly rss: number;
  readonly heapUsed: number;
  readonly cpuUs: number;
}

export interface ProbedController {
  readonly address: string;
  readonly pid: number;
  readonly nodeIds: readonly string[];
  /** `reset` and `gc` start a new delay window; `gc` collects first (the child runs with --expose-gc). */
  probe(kind: "read" | "reset" | "gc"): Promise<Probe>;
  /** Milliseconds for one RemoveNode, measured inside the controller, up to the loop turning again. */
  removeOne(): Promise<number>;
  close(): Promise<void>;
}

export async function startProbedController(nodes: number, racks: number): Promise<ProbedController> {
  const child: ChildProcess = fork(
    new URL("./controller-child.ts", import.meta.url),
    [String(nodes), String(racks)],
    {
      execArgv: [
        "--import",
        "tsx",
        "--expose-gc",
        ...(process.env.BENCH_NODE_FLAGS?.split(" ").filter(Boolean) ?? []),
      ],
      stdio: ["ignore", "inherit", "inherit", "ipc"],
    },
  );
  const killOnExit = () => child.kill("SIGKILL");
  process.once("exit", killOnExit);
  let port = 0;
  let nodeIds: string[] = [];
  for (;;) {
    const [message] = (await Promise.race([
      once(child, "message"),
      once(child, "exit").then(() => {
        throw new Error("the bench controller exited before it was ready");
      }),
    ])) as [{ ready?: { port: number; nodeIds: string[] } }];
    if (message.ready !== undefined) {
      port = message.ready.port;
      nodeIds = message.ready.nodeIds;
      break;
    }
  }
  let nextId = 1;
  const ask = <T>(message: Record<string, unknown>): Promise<T> => {
    const id = nextId++;
    return new Promise((resolve) => {
      const listener = (reply: { id?: number }) => {
        if (reply.id !== id) return;
        child.off("message", listener);
        resolve(reply as T);
      };
      child.on("message", listener);
      child.send({ ...message, id });
    });
  };
  return {
    address: `127.0.0.1:${port}`,
    pid: child.pid as number,
    nodeIds,
    probe: (kind) => ask<Probe>({ probe: kind }),
    removeOne: async () => (await ask<{ removeMs: number }>({ probe: "remove" })).removeMs,
    close: async () => {
      process.off("exit", killOnExit);
      if (child.exitCode !== null || child.signalCode !== null) return;
      const gone = once(child, "exit");
      child.kill("SIGTERM");
      const kill = setTimeout(() => child.kill("SIGKILL"), 3_000);
      await gone;
      clearTimeout(kill);
    },
  };
}
