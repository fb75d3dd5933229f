/**
 * Log lines through the controller against `cat`, in one run: a pipeline `process` block on the
 * controller's own node cats a file of N lines (9 000, which fits the run's log ring of 10 000, and
 * 200 000, twenty rings); a NanoPing `openLogStream` client on the loopback bridge reads them. Printed:
 * lines/s from the first line to the last the client got, how many it got and how the stream ended,
 * beside `cat` of the same file read by this process (lines counted), and the ratio. A reader that
 * keeps reading must get every line (the run's output waits for it), so "got" should equal N.
 *
 *   npm run bench:logs [-- --quick]   (--quick: 50 000 lines instead of 200 000, 2 rounds)
 *
 * Bounded: fixed counts, and a timer ends the whole run.
 */
import { spawn } from "node:child_process";
import { chmodSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { ConnectError, createClient } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import { PipelinesService } from "../../src/gen/pipelines_pb.ts";
import { plaintextClient } from "../../test/helpers/clients.ts";
import { startTestController } from "../../test/helpers/controller.ts";

const { values } = parseArgs({
  options: { quick: { type: "boolean", default: false }, gzip: { type: "boolean", default: false } },
});
const quick = values.quick === true;
const rounds = quick ? 2 : 3;
const sizes = [9_000, quick ? 50_000 : 200_000];

const deadline = setTimeout(
  () => {
    console.error("bench:logs: time limit reached");
    process.exit(2);
  },
  (quick ? 120 : 300) * 1000,
);
deadline.unref();

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] as number;
const fmt = (n: number) => Math.round(n).toLocaleString("en-US");

const dir = mkdtempSync(join(tmpdir(), "corral-bench-logs-"));
// Process blocks run as an unprivileged user (`nobody` when the bench runs as root): it must read these.
chmodSync(dir, 0o755);
const lineText = (i: number) => `line-${String(i).padStart(7, "0")} the quick brown fox jumps over it`;

async function catRate(path: string, expected: number): Promise<number> {
  const started = performance.now();
  const child = spawn("cat", [path], { stdio: ["ignore", "pipe", "ignore"] });
  let lines = 0;
  for await (const chunk of child.stdout as AsyncIterable<Buffer>) {
    for (let i = chunk.indexOf(10); i !== -1; i = chunk.indexOf(10, i + 1)) lines++;
  }
  if (lines !== expected) throw new Error(`cat gave ${lines} lines`);
  return (lines / (performance.now() - started)) * 1000;
}

const controller = await startTestController({ pipelines: { processAllow: ["/bin/sh"] } });
const nodeId = controller.controller.context.facts.controllerNodeId;
// A client as most gRPC clients are: gzip off unless asked for (`--gzip` accepts it, as grpc tools may).
const client = values.gzip
  ? plaintextClient(PipelinesService, controller.bridgePort)
  : createClient(
      PipelinesService,
      createGrpcTransport({ baseUrl: `http://127.0.0.1:${controller.bridgePort}` }),
    );
let created = 0;

async function streamRound(path: string): Promise<{ rate: number; received: number; outcome: string }> {
  const name = `bench-${created++}`;
  await client.createPipeline({
    nodeId,
    name,
    jsonConfig: JSON.stringify({
      version: 13,
      plumr_config: {
        pipeline: { cat: { process: { argv: ["/bin/sh", "-c", `sleep 0.5; exec cat ${path}`] } } },
      },
    }),
  });
  const { runId } = await client.startPipeline({ nodeId, pipelineIdentifier: { case: "name", value: name } });
  let received = 0;
  let first = 0;
  let last = 0;
  let outcome = "ended with the run";
  try {
    for await (const batch of client.openLogStream({
      nodeId,
      runId,
      options: { optionalLines: { case: "lines", value: 0n } },
    })) {
      for (const m of batch.messages) {
        if (!m.message.startsWith("cat: line-")) continue;
        if (received === 0) first = performance.now();
        received++;
        last = performance.now();
      }
    }
  } catch (error) {
    outcome = error instanceof ConnectError ? `ended: ${error.rawMessage}` : String(error);
  }
  return { rate: (received / Math.max(1, last - first)) * 1000, received, outcome };
}

try {
  for (const lines of sizes) {
    const path = join(dir, `lines-${lines}.txt`);
    writeFileSync(path, `${Array.from({ length: lines }, (_, i) => lineText(i)).join("\n")}\n`);
    const ratios: number[] = [];
    const streamRates: number[] = [];
    const catRates: number[] = [];
    let lastRound = { rate: 0, received: 0, outcome: "" };
    for (let i = 0; i < rounds; i++) {
      const cat = await catRate(path, lines);
      lastRound = await streamRound(path);
      catRates.push(cat);
      streamRates.push(lastRound.rate);
      ratios.push(lastRound.rate / cat);
    }
    console.log(
      `${fmt(lines)} lines, process block → openLogStream client via the controller (medians of ${rounds})`,
    );
    console.log(
      `  openLogStream: ${fmt(median(streamRates))} lines/s (last round: got ${fmt(lastRound.received)} of ${fmt(lines)}, ${lastRound.outcome})`,
    );
    console.log(`  cat of the same file: ${fmt(median(catRates))} lines/s`);
    console.log(
      `  ratio stream/cat: ${median(ratios).toFixed(3)} (range ${Math.min(...ratios).toFixed(3)}–${Math.max(...ratios).toFixed(3)}; target ≥ 0.5)`,
    );
  }
} finally {
  await controller.close();
  rmSync(dir, { recursive: true, force: true });
}
