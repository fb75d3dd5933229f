import { chmodSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { ConnectError } from "@connectrpc/connect";
import { PipelinesService } from "../../src/gen/pipelines_pb.ts";
import { Channel } from "../../src/pipelines/channel.ts";
import { parsePipelineConfig } from "../../src/pipelines/config.ts";
import { PipelineRun } from "../../src/pipelines/run.ts";
import { plaintextClient } from "../../test/helpers/clients.ts";
import { startTestController } from "../../test/helpers/controller.ts";
import { catRate, catRuns } from "../common/log-rounds.ts";

const { values } = parseArgs({ options: { quick: { type: "boolean", default: false } } });
const quick = values.quick === true;
const packets = quick ? 100_000 : 300_000;
const rounds = quick ? 2 : 3;
const logLines = quick ? 50_000 : 200_000;
const burstLines = 9_000;

const deadline = setTimeout(
  () => {
    console.error("bench:pipelines: time limit reached");
    process.exit(2);
  },
  (quick ? 120 : 300) * 1000,
);
deadline.unref();

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] as number;
const fmt = (n: number) => Math.round(n).toLocaleString("en-US");
const mib = (bytes: number) => `${(bytes / 2 ** 20).toFixed(1)} MiB`;

// (1) source → sink --------------------------------------------------------------------------------

async function pipelineRound(): Promise<{ inRun: number; wall: number }> {
  const parsed = parsePipelineConfig(
    JSON.stringify({
      version: 13,
      plumr_config: {
        pipeline: {
          sink: { traffic_sink: { input: "[sink|in:0]-[source|out:0]", mtu: 1500 } },
          source: {
            uniform_traffic_source: {
              output: "[sink|in:0]-[source|out:0]",
              total_packets: packets,
              interval: 0,
              packet_size: 64,
            },
          },
        },
      },
    }),
  );
  if (!parsed.compatible) throw new Error("config");
  const started = performance.now();
  const run = new PipelineRun({
    graph: parsed.graph,
    restart: { kind: "never", maxRestarts: 0 },
    instructionsTimeoutMs: 30_000,
  });
  await run.done;
  const wall = performance.now() - started;
  const sink = run.stats.sink;
  if (run.state !== "succeeded" || sink?.packets_received !== packets)
    throw new Error(`run ${run.state} (${run.exitReason}), received ${sink?.packets_received}`);
  return { inRun: Number(sink.throughput_pps), wall: (packets / wall) * 1000 };
}

/** The same work without the runtime: allocate, stamp, push through a Channel, pull, count. */
async function bareRound(): Promise<number> {
  const channel = new Channel(1024);
  const started = performance.now();
  const producer = (async () => {
    for (let seq = 0; seq < packets; seq++) {
      if (seq % 256 === 255) await new Promise<void>((resolve) => setImmediate(resolve));
      const packet = Buffer.alloc(64);
      packet.writeUInt32BE(seq >>> 0, 0);
      packet.writeDoubleBE(performance.timeOrigin + performance.now(), 4);
      await channel.push(packet);
    }
    channel.close();
  })();
  let received = 0;
  let bytes = 0;
  for (let p = await channel.pull(); p !== undefined; p = await channel.pull()) {
    received++;
    bytes += p.length;
    p.readUInt32BE(0);
    p.readDoubleBE(4);
  }
  await producer;
  if (received !== packets || bytes !== packets * 64) throw new Error("bare loop lost packets");
  return (packets / (performance.now() - started)) * 1000;
}

const inRun: number[] = [];
const wall: number[] = [];
const bare: number[] = [];
for (let i = 0; i < rounds; i++) {
  const r = await pipelineRound();
  inRun.push(r.inRun);
  wall.push(r.wall);
  bare.push(await bareRound());
}
const ratioRun = median(inRun.map((x, i) => x / (bare[i] as number)));
console.log(`(1) ${fmt(packets)} packets source → sink, interval 0, ${rounds} rounds (medians)`);
console.log(`    pipeline run, measured by the sink:      ${fmt(median(inRun))} packets/s`);
console.log(`    pipeline run, incl. worker start (wall): ${fmt(median(wall))} packets/s`);
console.log(`    bare loop, same buffers, same Channel:   ${fmt(median(bare))} packets/s`);
console.log(
  `    ratio pipeline/bare: ${ratioRun.toFixed(2)} (median of per-round ratios: ${inRun
    .map((x, i) => (x / (bare[i] as number)).toFixed(2))
    .join(", ")})`,
);

// (4) performance_mode on vs off ---------------------------------------------------------------------

const timedPackets = quick ? 1_000 : 3_000;

async function timedRound(performanceMode: boolean) {
  const parsed = parsePipelineConfig(
    JSON.stringify({
      version: 13,
      plumr_config: {
        pipeline: {
          sink: { traffic_sink: { input: "[sink|in:0]-[source|out:0]", mtu: 1500 } },
          source: {
            uniform_traffic_source: {
              output: "[sink|in:0]-[source|out:0]",
              total_packets: timedPackets,
              interval: 1000,
              packet_size: 64,
            },
          },
        },
      },
    }),
  );
  if (!parsed.compatible) throw new Error("config");
  const cpuBefore = process.cpuUsage();
  const started = performance.now();
  const run = new PipelineRun({
    graph: parsed.graph,
    restart: { kind: "never", maxRestarts: 0 },
    instructionsTimeoutMs: 30_000,
    performanceMode,
  });
  await run.done;
  const wallMs = performance.now() - started;
  const cpu = process.cpuUsage(cpuBefore);
  const source = run.stats.source;
  const sink = run.stats.sink;
  if (run.state !== "succeeded" || sink?.packets_received !== timedPackets || source === undefined)
    throw new Error(`timed run ${run.state} (${run.exitReason})`);
  return {
    pacing: String(source.pacing),
    errorP50: Number(source.pacing_error_p50_ms),
    errorP99: Number(source.pacing_error_p99_ms),
    latencyP50: Number(sink.latency_p50_ms),
    latencyP99: Number(sink.latency_p99_ms),
    // CPU of this whole process (the run's worker thread included) per wall second.
    cpuShare: (cpu.user + cpu.system) / 1000 / wallMs,
  };
}

const timed = {
  on: [] as Awaited<ReturnType<typeof timedRound>>[],
  off: [] as Awaited<ReturnType<typeof timedRound>>[],
};
// Three rounds at least: one round can land on a burst of other work on the machine.
for (let i = 0; i < Math.max(3, rounds); i++) {
  timed.on.push(await timedRound(true));
  timed.off.push(await timedRound(false));
}
const us = (ms: number) => `${Math.round(ms * 1000).toLocaleString("en-US")} µs`;
console.log(
  `(4) performance_mode, a source timed at 1 packet/ms (${fmt(timedPackets)} packets) → sink, ${timed.on.length} rounds each, alternating (medians)`,
);
for (const [mode, results] of [
  ["on ", timed.on],
  ["off", timed.off],
] as const) {
  const m = (pick: (r: (typeof results)[number]) => number) => median(results.map(pick));
  console.log(
    `    ${mode} (${results[0]?.pacing} pacing): sent vs due p50 ${us(m((r) => r.errorP50))}, p99 ${us(m((r) => r.errorP99))}; ` +
      `sink latency p50 ${us(m((r) => r.latencyP50))}, p99 ${us(m((r) => r.latencyP99))}; CPU ${(m((r) => r.cpuShare) * 100).toFixed(0)}% of a core`,
  );
}

// (2) log lines to an openLogStream client ---------------------------------------------------------

const dir = mkdtempSync(join(tmpdir(), "corral-bench-pipelines-"));
// Process blocks run as an unprivileged user (`nobody` when the bench runs as root): it must read these.
chmodSync(dir, 0o755);
const file = join(dir, "lines.txt");
const burstFile = join(dir, "burst.txt");
const lineText = (i: number) => `line-${String(i).padStart(7, "0")} the quick brown fox jumps over it`;
writeFileSync(file, `${Array.from({ length: logLines }, (_, i) => lineText(i)).join("\n")}\n`);
writeFileSync(burstFile, `${Array.from({ length: burstLines }, (_, i) => lineText(i)).join("\n")}\n`);

// Figures (2) and (3) run `/bin/sh -c "… cat …"` as process blocks: the node must allow it.
const controller = await startTestController({ pipelines: { processAllow: ["/bin/sh"] } });
const nodeId = controller.controller.context.facts.controllerNodeId;
const client = plaintextClient(PipelinesService, controller.bridgePort);
const { start: startCat, logRound } = catRuns(client, nodeId);

for (const [path, lines] of [
  [burstFile, burstLines],
  [file, logLines],
] as const) {
  const catRates: number[] = [];
  const streamRates: number[] = [];
  let lastLog = { rate: 0, received: 0, outcome: "" };
  for (let i = 0; i < rounds; i++) {
    catRates.push(await catRate(path, lines));
    lastLog = await logRound(path);
    streamRates.push(lastLog.rate);
  }
  console.log(
    `(2) ${fmt(lines)} log lines, process block → openLogStream client via the controller (medians)`,
  );
  console.log(
    `    openLogStream: ${fmt(median(streamRates))} lines/s (last round: ${fmt(lastLog.received)} of ${fmt(lines)} lines, ${lastLog.outcome})`,
  );
  console.log(`    cat of the same file: ${fmt(median(catRates))} lines/s`);
  console.log(
    `    ratio stream/cat: ${median(streamRates.map((x, i) => x / (catRates[i] as number))).toFixed(3)}`,
  );
}

// (3) a slow reader --------------------------------------------------------------------------------

global.gc?.();
const rssBefore = process.memoryUsage().rss;
let rssPeak = rssBefore;
const sampler = setInterval(() => {
  rssPeak = Math.max(rssPeak, process.memoryUsage().rss);
}, 100);
const copies = quick ? 3 : 5;
const slowRun = await startCat([
  "/bin/sh",
  "-c",
  `sleep 0.5; exec cat ${Array(copies).fill(file).join(" ")}`,
]);
let slowRead = 0;
let slowOutcome = "ended with the run";
const slowStop = AbortSignal.timeout(20_000);
try {
  for await (const batch of client.openLogStream(
    { nodeId, runId: slowRun, options: { optionalLines: { case: "lines", value: 0n } } },
    { signal: slowStop },
  )) {
    slowRead += batch.messages.length;
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
} catch (error) {
  slowOutcome = slowStop.aborted
    ? "stopped after 20 s"
    : error instanceof ConnectError
      ? `ended: ${error.rawMessage}`
      : String(error);
}
await client
  .stopPipeline({ nodeId, pipelineIdentifier: { case: "runId", value: slowRun } })
  .catch(() => undefined);
clearInterval(sampler);
global.gc?.();
const rssAfter = process.memoryUsage().rss;
console.log(`(3) slow reader (5 ms per message) while a process writes ${fmt(copies * logLines)} lines`);
console.log(`    read ${fmt(slowRead)} lines, ${slowOutcome}`);
console.log(`    RSS before ${mib(rssBefore)}, peak ${mib(rssPeak)}, after ${mib(rssAfter)}`);

await controller.close();
rmSync(dir, { recursive: true, force: true });
clearTimeout(deadline);
