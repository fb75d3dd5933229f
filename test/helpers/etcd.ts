import { type ChildProcess, spawn } from "node:child_process";
import { existsSync } from "node:fs";
import { mkdtemp, rm } from "node:fs/promises";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";

/** Debian's etcd-server puts it here; `.ci/run` installs it. */
export const etcdBinary = process.env.CORRAL_ETCD_BINARY ?? "/usr/bin/etcd";

/** Why etcd tests must skip on this machine, or undefined when they can run. */
export function etcdMissing(): string | undefined {
  return existsSync(etcdBinary)
    ? undefined
    : `no etcd at ${etcdBinary}: install Debian's etcd-server (.ci/run does) to run the etcd tests`;
}

export interface TestEtcd {
  /** The client URL, http://127.0.0.1:<port>. */
  readonly endpoint: string;
  readonly dataDir: string;
  /** SIGKILLs etcd, keeping its data dir and ports (for `revive`). */
  kill(): Promise<void>;
  /** Starts etcd again on the same data dir and ports; resolves once it answers. */
  revive(): Promise<void>;
  /** Kills etcd and removes its data dir; calling it twice is harmless. */
  stop(): Promise<void>;
}

/** A real single-member etcd in a temp dir, on free loopback ports; resolves once it answers. */
export async function startTestEtcd(): Promise<TestEtcd> {
  let lastError: unknown;
  // Free ports are found by binding port 0 and letting go; another process may take one in between.
  for (let attempt = 0; attempt < 3; attempt++) {
    const dataDir = await mkdtemp(join(tmpdir(), "corral-etcd-"));
    const [clientPort, peerPort] = [await freePort(), await freePort()];
    const endpoint = `http://127.0.0.1:${clientPort}`;
    const peer = `http://127.0.0.1:${peerPort}`;
    const launch = () =>
      spawn(
        etcdBinary,
        [
          "--name=default",
          `--data-dir=${join(dataDir, "data")}`,
          `--listen-client-urls=${endpoint}`,
          `--advertise-client-urls=${endpoint}`,
          `--listen-peer-urls=${peer}`,
          `--initial-advertise-peer-urls=${peer}`,
          `--initial-cluster=default=${peer}`,
          "--initial-cluster-state=new",
          "--log-level=warn",
          "--logger=zap",
        ],
        { stdio: ["ignore", "ignore", "pipe"] },
      );
    let stderr = "";
    let child = launch();
    const capture = (running: ChildProcess) =>
      running.stderr?.on("data", (chunk: Buffer) => {
        stderr = (stderr + chunk.toString("utf8")).slice(-4_000);
      });
    capture(child);
    const stop = once(async () => {
      await kill(child);
      await rm(dataDir, { recursive: true, force: true });
    });
    try {
      await waitHealthy(endpoint, child, () => stderr);
      return {
        endpoint,
        dataDir,
        stop,
        kill: () => kill(child),
        async revive() {
          await kill(child);
          child = launch();
          capture(child);
          await waitHealthy(endpoint, child, () => stderr);
        },
      };
    } catch (error) {
      lastError = error;
      await stop();
    }
  }
  throw lastError;
}

async function waitHealthy(endpoint: string, child: ChildProcess, stderr: () => string): Promise<void> {
  const deadline = Date.now() + 15_000;
  while (Date.now() < deadline) {
    if (child.exitCode !== null || child.signalCode !== null)
      throw new Error(`etcd exited (${child.exitCode ?? child.signalCode}): ${stderr()}`);
    try {
      const response = await fetch(`${endpoint}/health`, { signal: AbortSignal.timeout(1_000) });
      const body = (await response.json()) as { health?: string };
      if (response.ok && body.health === "true") return;
    } catch {
      // not listening yet
    }
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  throw new Error(`etcd at ${endpoint} did not become healthy in 15 s: ${stderr()}`);
}

async function kill(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise<void>((resolve) => child.once("exit", () => resolve()));
  child.kill("SIGKILL");
  await exited;
}

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once("error", reject);
    server.listen(0, "127.0.0.1", () => {
      const address = server.address();
      server.close(() => {
        if (address === null || typeof address === "string") reject(new Error("no port"));
        else resolve(address.port);
      });
    });
  });
}

function once(work: () => Promise<void>): () => Promise<void> {
  let running: Promise<void> | undefined;
  return () => {
    running ??= work();
    return running;
  };
}
