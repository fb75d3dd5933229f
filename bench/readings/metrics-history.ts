/**
 * The controller's memory per node of agent metrics history, and how fast it takes samples in.
 *
 *   npm run bench:metrics-history [-- --quick] [-- --nodes 1000] [-- --samples 360]
 *
 * 1. Memory: `nodes` simulated nodes, each with a full ring of `samples` samples, in corral's
 *    MetricsHistory; the heap (plus array buffers) measured with gc before and after. Figure: bytes per
 *    node and the ratio to the raw sample bytes (ten float64 numbers a sample). Baseline in the same
 *    run: the same samples kept the obvious way, an array of plain objects per node.
 * 2. Ingest: samples recorded per second (one sample per call, round-robin over the nodes, the rings
 *    full so every call overwrites), against a no-op `record` with the same call shape; and with one
 *    whole-fleet watcher attached and draining, to show what a dashboard costs.
 *
 * Results also go to .bench-out/metrics-history.json. Needs --expose-gc (the npm script passes it).
 */
import { mkdirSync, writeFileSync } from "node:fs";
import os from "node:os";
import { parseArgs } from "node:util";
import { MetricsHistory, type MetricsPoint, rawSampleBytes } from "../../src/core/metrics/metrics-history.ts";

const { values: options } = parseArgs({
  options: {
    quick: { type: "boolean", default: false },
    nodes: { type: "string" },
    samples: { type: "string" },
  },
});
const quick = options.quick === true;
const nodeCount = Number(options.nodes ?? (quick ? 200 : 1_000));
const capacity = Number(options.samples ?? 360);
const ingestMs = quick ? 300 : 1_000;
const rounds = quick ? 3 : 5;

const gc = (globalThis as { gc?: () => void }).gc;
if (gc === undefined) {
  process.stderr.write("run with node --expose-gc (npm run bench:metrics-history does)\n");
  process.exit(2);
}

function settle(): number {
  for (let i = 0; i < 4; i += 1) gc?.();
  const usage = process.memoryUsage();
  return usage.heapUsed + usage.arrayBuffers;
}

function sample(node: number, time: number): MetricsPoint {
  return {
    timeUnixMs: time,
    cpuPercent: (node * 7 + time) % 100,
    memoryUsedBytes: 1_000_000_000 + node,
    memoryTotalBytes: 4_000_000_000,
    networkRxBytesPerSecond: time % 10_000,
    networkTxBytesPerSecond: (time * 3) % 10_000,
    temperatureCelsius: 40 + (time % 20),
    load1: 0.5,
    load5: 0.4,
    load15: 0.3,
    gpus: [],
  };
}

const nodeIds = Array.from({ length: nodeCount }, (_, i) => `node-${String(i).padStart(6, "0")}`);

// ------------------------------------------------------------------------------------------ memory

function measureRing(): number {
  const before = settle();
  const history = new MetricsHistory({ capacity, maxQueued: 1_024 });
  for (let t = 1; t <= capacity; t += 1)
    for (let n = 0; n < nodeCount; n += 1) history.record(nodeIds[n] as string, [sample(n, t)]);
  const after = settle();
  if (history.history(nodeIds[0] as string).length !== capacity) throw new Error("the ring is not full");
  return after - before;
}

function measureObjects(): number {
  const before = settle();
  const kept = new Map<string, MetricsPoint[]>();
  for (let t = 1; t <= capacity; t += 1)
    for (let n = 0; n < nodeCount; n += 1) {
      const id = nodeIds[n] as string;
      let list = kept.get(id);
      if (list === undefined) {
        list = [];
        kept.set(id, list);
      }
      list.push(sample(n, t));
    }
  const after = settle();
  if ((kept.get(nodeIds[0] as string)?.length ?? 0) !== capacity) throw new Error("not all kept");
  return after - before;
}

const rawBytes = nodeCount * capacity * rawSampleBytes;
const ringBytes = Math.min(...Array.from({ length: quick ? 1 : 3 }, measureRing));
const objectBytes = Math.min(...Array.from({ length: quick ? 1 : 3 }, measureObjects));

// ------------------------------------------------------------------------------------------ ingest

interface Recorder {
  record(nodeId: string, points: readonly MetricsPoint[]): number;
}

const noop: Recorder = { record: (_nodeId, points) => points.length };

/**
 * Samples recorded per second over one slice of `ingestMs`. Every 1 024 calls the clock is read and the
 * event loop gets a turn (where a watcher drains its queue), the same for the ring and the no-op.
 */
async function ingestRate(recorder: Recorder, startTime: number): Promise<{ rate: number; time: number }> {
  let time = startTime;
  let calls = 0;
  let sink = 0;
  const started = performance.now();
  let elapsed = 0;
  while (elapsed < ingestMs) {
    for (let i = 0; i < 1_024; i += 1) {
      const n = calls % nodeCount;
      if (n === 0) time += 1;
      sink += recorder.record(nodeIds[n] as string, [sample(n, time)]);
      calls += 1;
    }
    await new Promise((resolve) => setImmediate(resolve));
    elapsed = performance.now() - started;
  }
  if (sink < 0) throw new Error("unreachable");
  return { rate: calls / (elapsed / 1000), time };
}

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)] ?? 0;
}

const history = new MetricsHistory({ capacity, maxQueued: 4_096 });
let clock = 0;
for (let t = 1; t <= capacity; t += 1)
  for (let n = 0; n < nodeCount; n += 1) history.record(nodeIds[n] as string, [sample(n, t)]);
clock = capacity;
const ringRates: number[] = [];
const noopRates: number[] = [];
for (let round = 0; round < rounds; round += 1) {
  const ring = await ingestRate(history, clock);
  clock = ring.time;
  ringRates.push(ring.rate);
  noopRates.push((await ingestRate(noop, 0)).rate);
}

// With one whole-fleet watcher draining between slices (the dashboard's WatchNodeMetrics).
const stop = new AbortController();
const watch = history.watch(undefined, clock, stop.signal);
let delivered = 0;
const draining = (async () => {
  for await (const batch of watch) delivered += batch.samples.length;
})();
const watchedRates: number[] = [];
for (let round = 0; round < rounds; round += 1) {
  const ring = await ingestRate(history, clock);
  clock = ring.time;
  watchedRates.push(ring.rate);
}
const watcherKept = history.watchers === 1;
stop.abort();
await draining.catch(() => undefined);

// ------------------------------------------------------------------------------------------ report

const perNode = (bytes: number) => bytes / nodeCount;
const kib = (bytes: number) => `${(bytes / 1024).toFixed(1)} KiB`;
const rate = (value: number) => `${(value / 1e6).toFixed(2)} M samples/s`;
const lines = [
  `metrics history: ${nodeCount} nodes × ${capacity} samples (a full ring each), node ${process.version}, ${os.cpus().length} CPUs`,
  "",
  "memory (heap + array buffers after gc, minus before)",
  `  raw sample bytes        ${kib(perNode(rawBytes))} per node  (${rawSampleBytes} B a sample)`,
  `  corral's ring           ${kib(perNode(ringBytes))} per node  ratio to raw ${(ringBytes / rawBytes).toFixed(2)}`,
  `  baseline: object array  ${kib(perNode(objectBytes))} per node  ratio to raw ${(objectBytes / rawBytes).toFixed(2)}`,
  `  ring / baseline         ${(ringBytes / objectBytes).toFixed(2)}`,
  "",
  `ingest (one sample a call, rings full; median of ${rounds} slices of ${ingestMs} ms)`,
  `  corral's ring           ${rate(median(ringRates))}`,
  `  baseline: no-op record  ${rate(median(noopRates))}`,
  `  ratio ring / no-op      ${(median(ringRates) / median(noopRates)).toFixed(2)}`,
  `  with a fleet watcher    ${rate(median(watchedRates))}  (${delivered} samples delivered to it${watcherKept ? "" : "; it fell behind and was cut off"})`,
];
process.stdout.write(`${lines.join("\n")}\n`);

const out = new URL("../../.bench-out/", import.meta.url);
mkdirSync(out, { recursive: true });
writeFileSync(
  new URL("metrics-history.json", out),
  `${JSON.stringify(
    {
      nodeCount,
      capacity,
      quick,
      rawBytesPerNode: perNode(rawBytes),
      ringBytesPerNode: perNode(ringBytes),
      objectBytesPerNode: perNode(objectBytes),
      ringToRaw: ringBytes / rawBytes,
      objectToRaw: objectBytes / rawBytes,
      ingestPerSecond: median(ringRates),
      noopPerSecond: median(noopRates),
      watchedPerSecond: median(watchedRates),
      node: process.version,
      cpus: os.cpus().length,
    },
    null,
    2,
  )}\n`,
);
