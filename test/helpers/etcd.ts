import { type ChildProcess, spawn } from "node:child_process";
import { existsSync } from "node:fs";
import { mkdtemp, readFile, rm } from "node:fs/promises";
import { request as httpsRequest } from "node:https";
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

/** Client TLS for a test etcd: PEM files, served on https:// client URLs (peers stay plaintext). */
export interface TestEtcdTls {
  readonly certFile: string;
  readonly keyFile: string;
  /** The CA client certificates must chain to. */
  readonly trustedCaFile: string;
  /** Refuse clients without a certificate from `trustedCaFile`. */
  readonly clientCertAuth?: boolean;
  /**
   * What the health check trusts and presents. Default: trust `trustedCaFile`, and with `clientCertAuth`
   * present etcd's own certificate and key (which then must allow client auth too).
   */
  readonly probe?: { readonly ca: Buffer; readonly cert?: Buffer; readonly key?: Buffer };
}

export interface TestEtcdOptions {
  readonly tls?: TestEtcdTls;
}

export interface TestEtcd {
  /** The client URL, http://127.0.0.1:<port> (https:// with `tls`). */
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
export async function startTestEtcd(options: TestEtcdOptions = {}): Promise<TestEtcd> {
  const tls = options.tls;
  const tlsFlags =
    tls === undefined
      ? []
      : [
          `--cert-file=${tls.certFile}`,
          `--key-file=${tls.keyFile}`,
          `--trusted-ca-file=${tls.trustedCaFile}`,
          ...(tls.clientCertAuth === true ? ["--client-cert-auth"] : []),
        ];
  const probe =
    tls === undefined
      ? undefined
      : (tls.probe ?? {
          ca: await readFile(tls.trustedCaFile),
          ...(tls.clientCertAuth === true
            ? { cert: await readFile(tls.certFile), key: await readFile(tls.keyFile) }
            : {}),
        });
  let lastError: unknown;
  // Free ports are found by binding port 0 and letting go; another process may take one in between.
  for (let attempt = 0; attempt < 3; attempt++) {
    const dataDir = await mkdtemp(join(tmpdir(), "corral-etcd-"));
    const [clientPort, peerPort] = [await freePort(), await freePort()];
    const endpoint = `${tls === undefined ? "http" : "https"}://127.0.0.1:${clientPort}`;
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
          ...tlsFlags,
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
      await waitHealthy(endpoint, child, () => stderr, probe);
      return {
        endpoint,
        dataDir,
        stop,
        kill: () => kill(child),
        async revive() {
          await kill(child);
          child = launch();
          capture(child);
          await waitHealthy(endpoint, child, () => stderr, probe);
        },
      };
    } catch (error) {
      lastError = error;
      await stop();
    }
  }
  throw lastError;
}

async function waitHealthy(
  endpoint: string,
  child: ChildProcess,
  stderr: () => string,
  tls?: TestEtcdTls["probe"],
): Promise<void> {
  const deadline = Date.now() + 15_000;
  while (Date.now() < deadline) {
    if (child.exitCode !== null || child.signalCode !== null)
      throw new Error(`etcd exited (${child.exitCode ?? child.signalCode}): ${stderr()}`);
    try {
      if (tls === undefined) {
        const response = await fetch(`${endpoint}/health`, { signal: AbortSignal.timeout(1_000) });
        const body = (await response.json()) as { health?: string };
        if (response.ok && body.health === "true") return;
      } else if (await healthyOverTls(endpoint, tls)) return;
    } catch {
      // not listening yet
    }
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  throw new Error(`etcd at ${endpoint} did not become healthy in 15 s: ${stderr()}`);
}

/** fetch cannot present a client certificate, so the TLS health check is node:https. */
function healthyOverTls(endpoint: string, tls: NonNullable<TestEtcdTls["probe"]>): Promise<boolean> {
  return new Promise((resolve, reject) => {
    const request = httpsRequest(
      `${endpoint}/health`,
      {
        ca: tls.ca,
        ...(tls.cert === undefined ? {} : { cert: tls.cert }),
        ...(tls.key === undefined ? {} : { key: tls.key }),
        timeout: 1_000,
      },
      (response) => {
        let body = "";
        response.setEncoding("utf8");
        response.on("data", (chunk: string) => {
          body += chunk;
        });
        response.on("end", () => {
          try {
            resolve(
              response.statusCode === 200 && (JSON.parse(body) as { health?: string }).health === "true",
            );
          } catch {
            resolve(false);
          }
        });
        response.on("error", reject);
      },
    );
    request.on("timeout", () => request.destroy(new Error("health check timed out")));
    request.on("error", reject);
    request.end();
  });
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
