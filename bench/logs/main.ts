import { chmodSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { createClient } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import { PipelinesService } from "../../src/gen/pipelines_pb.ts";
import { plaintextClient } from "../../test/helpers/clients.ts";
import { startTestController } from "../../test/helpers/controller.ts";
import { catRate, catRuns } from "../common/log-rounds.ts";

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

const controller = await startTestController({ pipelines: { processAllow: ["/bin/sh"] } });
const nodeId = controller.controller.context.facts.controllerNodeId;
// A client as most gRPC clients are: gzip off unless asked for (`--gzip` accepts it, as grpc tools may).
const client = values.gzip
  ? plaintextClient(PipelinesService, controller.bridgePort)
  : createClient(
      PipelinesService,
      createGrpcTransport({ baseUrl: `http://127.0.0.1:${controller.bridgePort}` }),
    );
const { logRound: streamRound } = catRuns(client, nodeId);

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
