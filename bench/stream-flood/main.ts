/**
 * Stream flood: one client opens many server streams (corral.v1.NodesService/WatchNodes) on a real
 * controller process and the bench prints the controller's resident memory idle, with the streams open,
 * and after they are cancelled, with how many were accepted and refused (RESOURCE_EXHAUSTED), and how
 * long a health check takes right after the mass cancel. Loopback only; bounded in count and in time.
 *
 *   npm run bench:stream-flood -- [--streams 2000] [--connections 1]
 *       [--per-connection 100] [--per-principal 200] [--settle 3000]
 *
 * `--per-connection 100000 --per-principal 100000` shows the controller without limits (as before).
 */
import { type ChildProcess, spawn } from "node:child_process";
import { once } from "node:events";
import { readFileSync } from "node:fs";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parseArgs } from "node:util";
import * as grpc from "@grpc/grpc-js";
import { defaults } from "../../src/defaults.ts";

const { values } = parseArgs({
  options: {
    streams: { type: "string", default: "2000" },
    connections: { type: "string", default: "1" },
    "per-connection": { type: "string", default: String(defaults.streams.perConnection) },
    "per-principal": { type: "string", default: String(defaults.streams.perPrincipal) },
    settle: { type: "string", default: "3000" },
  },
});
const count = (name: string, text: string | undefined, max: number): number => {
  const n = Number(text);
  if (!Number.isInteger(n) || n < 1 || n > max) throw new Error(`--${name}: a whole number 1 to ${max}`);
  return n;
};
const streams = count("streams", values.streams, 20_000);
const connections = count("connections", values.connections, 100);
const perConnection = count("per-connection", values["per-connection"], 1_000_000);
const perPrincipal = count("per-principal", values["per-principal"], 1_000_000);
const settleMs = count("settle", values.settle, 60_000);
/** Every wait of the bench ends by this much at the latest. */
const stepTimeoutMs = 60_000;

const raw = (bytes: Buffer): Buffer => bytes;
const empty = Buffer.alloc(0);

function rssMb(pid: number): number {
  const status = readFileSync(`/proc/${pid}/status`, "utf8");
  const kb = Number(/VmRSS:\s+(\d+)/.exec(status)?.[1] ?? Number.NaN);
  return Math.round(kb / 1024);
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

async function startController(dir: string): Promise<{ child: ChildProcess; bridge: string }> {
  const file = join(dir, "controller.yaml");
  await writeFile(
    file,
    [
      "http:",
      "  address: 127.0.0.1:0",
      "grpcBridge:",
      "  address: 127.0.0.1:0",
      "web:",
      "  address: 127.0.0.1:0",
      `dataDir: ${JSON.stringify(join(dir, "data"))}`,
      "shutdownGrace: 1s",
      "limits:",
      `  streamsPerConnection: ${perConnection}`,
      `  streamsPerPrincipal: ${perPrincipal}`,
      "",
    ].join("\n"),
  );
  const bin = join(import.meta.dirname, "../../bin/corral.js");
  const child = spawn(process.execPath, [bin, "controller", "--config", file, "--log-level", "warn"], {
    stdio: ["ignore", "pipe", "pipe"],
  });
  let output = "";
  const bridge = await new Promise<string>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`the controller did not start:\n${output}`)), 30_000);
    const onData = (chunk: Buffer) => {
      output += chunk.toString();
      const match = /bridge \(gRPC, h2c\)\s+(\S+)/.exec(output);
      if (match?.[1] !== undefined) {
        clearTimeout(timer);
        resolve(match[1]);
      }
    };
    child.stdout?.on("data", onData);
    child.stderr?.on("data", onData);
    child.once("exit", (code) => reject(new Error(`the controller exited (${code}):\n${output}`)));
  });
  return { child, bridge };
}

interface Outcome {
  open: number;
  refused: number;
  other: Map<string, number>;
}

/** Opens `streams` watches spread over `clients`; resolves once each is open (first message) or ended. */
async function flood(
  clients: grpc.Client[],
): Promise<{ calls: grpc.ClientReadableStream<Buffer>[]; outcome: Outcome }> {
  const outcome: Outcome = { open: 0, refused: 0, other: new Map() };
  const calls: grpc.ClientReadableStream<Buffer>[] = [];
  const settled: Promise<void>[] = [];
  for (let i = 0; i < streams; i++) {
    const client = clients[i % clients.length] as grpc.Client;
    const call = client.makeServerStreamRequest("/corral.v1.NodesService/WatchNodes", raw, raw, empty);
    calls.push(call);
    settled.push(
      new Promise<void>((resolve) => {
        let done = false;
        const finish = (what: () => void) => {
          if (done) return;
          done = true;
          what();
          resolve();
        };
        call.once("data", () => finish(() => outcome.open++));
        call.on("error", (error: grpc.ServiceError) =>
          finish(() => {
            if (error.code === grpc.status.RESOURCE_EXHAUSTED) outcome.refused++;
            else {
              const key = grpc.status[error.code] ?? String(error.code);
              outcome.other.set(key, (outcome.other.get(key) ?? 0) + 1);
            }
          }),
        );
        call.once("end", () =>
          finish(() => outcome.other.set("ended", (outcome.other.get("ended") ?? 0) + 1)),
        );
      }),
    );
  }
  await Promise.race([Promise.all(settled), sleep(stepTimeoutMs)]);
  return { calls, outcome };
}

/** How long one Health/Check takes (ms), bounded. */
function healthCheckMs(client: grpc.Client): Promise<number> {
  const started = performance.now();
  return new Promise((resolve) => {
    client.makeUnaryRequest(
      "/grpc.health.v1.Health/Check",
      raw,
      raw,
      empty,
      new grpc.Metadata(),
      { deadline: Date.now() + stepTimeoutMs },
      () => resolve(Math.round(performance.now() - started)),
    );
  });
}

const dir = await mkdtemp(join(tmpdir(), "corral-stream-flood-"));
let controller: ChildProcess | undefined;
try {
  const started = await startController(dir);
  controller = started.child;
  const pid = controller.pid as number;
  // One channel per connection: a local subchannel pool stops grpc-js from sharing one connection.
  const clients = Array.from(
    { length: connections },
    () =>
      new grpc.Client(started.bridge, grpc.credentials.createInsecure(), {
        "grpc.use_local_subchannel_pool": 1,
      }),
  );
  await healthCheckMs(clients[0] as grpc.Client);
  await sleep(settleMs);
  const idle = rssMb(pid);
  const { calls, outcome } = await flood(clients);
  const whileOpen = rssMb(pid);
  for (const call of calls) call.cancel();
  const afterCancelCheckMs = await healthCheckMs(clients[0] as grpc.Client);
  await sleep(settleMs);
  const afterCancel = rssMb(pid);
  const other = [...outcome.other].map(([k, v]) => `${k} ${v}`).join(", ") || "none";
  console.log(
    [
      `stream flood: ${streams} WatchNodes streams over ${connections} connection(s) to the bridge`,
      `limits: streamsPerConnection ${perConnection}, streamsPerPrincipal ${perPrincipal}`,
      `accepted ${outcome.open}, refused RESOURCE_EXHAUSTED ${outcome.refused}, other ${other}`,
      `controller RSS: idle ${idle} MiB, streams open ${whileOpen} MiB, ${settleMs} ms after cancel ${afterCancel} MiB`,
      `health check right after the mass cancel: ${afterCancelCheckMs} ms`,
    ].join("\n"),
  );
  for (const client of clients) client.close();
} finally {
  if (controller !== undefined && controller.exitCode === null) {
    controller.kill("SIGTERM");
    await Promise.race([once(controller, "exit"), sleep(10_000)]);
    if (controller.exitCode === null) controller.kill("SIGKILL");
  }
  await rm(dir, { recursive: true, force: true });
}
