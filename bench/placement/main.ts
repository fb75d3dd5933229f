/**
 * Model-layer placement at scale: 100 models over 10 000 nodes, placed from nothing and re-placed after
 * one node fails, by corral's engine (`placeLayers`, src/core/models/placement.ts) next to a naive full
 * recomputation measured in the same run, on the same input.
 *
 *   (a) corral, initial: every model placed into an empty cluster (GPU nodes first, fewest nodes,
 *       best fit for the last piece).
 *   (b) corral, one node fails: the node holding the most layers goes `evict`; the engine keeps every
 *       other layer where it is and fills only the hole.
 *   (c) naive, initial and after the failure: for each model, sort every usable node (GPU first, most
 *       free first) and fill from the top, ignoring where layers were — a full recomputation. Also
 *       shown: corral's own rules run from nothing after the failure (a full recomputation without the
 *       naive sort), to separate the cost of the algorithm from the cost of recomputing.
 *   (d) through the store: ModelRegistry.reconcile() on SQLite (in memory) with the same cluster, once
 *       with nothing to do (the cost of reading and deciding) and once after the node is marked down.
 *       --nodes-store sets its size (default 10 000; the node records are real, ~1 KiB of JSON each).
 *
 * Each pure figure is the median of --rounds runs (default 15; --quick 5) after 2 warm-up runs, taken
 * in turn (a, c, b, c') so that a burst of noise hits both. Layers moved are counted layer by layer
 * (comparePlacements). Exits non-zero if a placement over-commits a node or leaves layers unplaced.
 *
 *   npm run bench:placement [-- --quick] [-- --nodes 10000 --models 100] [-- --seed 7]
 *
 * Results also go to .bench-out/placement.json.
 */

import { mkdirSync, writeFileSync } from "node:fs";
import os from "node:os";
import { performance } from "node:perf_hooks";
import { parseArgs } from "node:util";
import { ManualClock } from "../../src/base/clock.ts";
import { ModelRegistry } from "../../src/core/models/model-registry.ts";
import {
  comparePlacements,
  type LayerRange,
  type PlacementModel,
  type PlacementNode,
  type PlacementResult,
  placeLayers,
} from "../../src/core/models/placement.ts";
import { NodeRegistry } from "../../src/core/nodes/node-registry.ts";
import { SqliteStore } from "../../src/store/sqlite/sqlite-store.ts";

const { values: options } = parseArgs({
  options: {
    quick: { type: "boolean", default: false },
    nodes: { type: "string", default: "10000" },
    models: { type: "string", default: "100" },
    rounds: { type: "string" },
    seed: { type: "string", default: "7" },
    "nodes-store": { type: "string" },
    "skip-store": { type: "boolean", default: false },
  },
  strict: true,
});
const quick = options.quick === true;
const nodeCount = wholeNumber(options.nodes, "--nodes", 1, 1_000_000);
const modelCount = wholeNumber(options.models, "--models", 1, 100_000);
const rounds = wholeNumber(options.rounds ?? (quick ? "5" : "15"), "--rounds", 1, 1_000);
const storeNodes = wholeNumber(options["nodes-store"] ?? String(nodeCount), "--nodes-store", 1, 1_000_000);
const seed = wholeNumber(options.seed, "--seed", 0, 2 ** 31);

function wholeNumber(text: string | undefined, flag: string, min: number, max: number): number {
  const n = Number(text);
  if (!Number.isInteger(n) || n < min || n > max) {
    console.error(`${flag} must be a whole number from ${min} to ${max}, got ${text}`);
    process.exit(2);
  }
  return n;
}

/** mulberry32: a small seeded generator, so every run places the same cluster. */
function random(seedValue: number): () => number {
  let a = seedValue >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4_294_967_296;
  };
}

const rand = random(seed);
const int = (min: number, max: number) => min + Math.floor(rand() * (max - min + 1));

// A fleet: one node in five has a GPU (more layers); CPU nodes hold fewer.
const nodes: PlacementNode[] = Array.from({ length: nodeCount }, (_, i) => {
  const gpu = rand() < 0.2;
  return {
    id: `node-${String(i).padStart(6, "0")}`,
    capacity: gpu ? int(24, 96) : int(4, 32),
    gpu,
    state: "eligible" as const,
  };
});
// Models of 7B–70B shapes: 24 to 120 layers.
const freshModels: PlacementModel[] = Array.from({ length: modelCount }, (_, i) => ({
  id: `model-${String(i).padStart(4, "0")}`,
  layerCount: int(24, 120),
  wanted: true,
  assignments: [],
}));

/** The naive baseline: a full recomputation that sorts every usable node for every model. */
function naivePlace(input: {
  nodes: readonly PlacementNode[];
  models: readonly PlacementModel[];
}): PlacementResult {
  const free = new Map(input.nodes.filter((n) => n.state === "eligible").map((n) => [n.id, n.capacity]));
  const gpu = new Map(input.nodes.map((n) => [n.id, n.gpu]));
  const usage = new Map<string, number>();
  const models = input.models.map((model) => {
    const candidates = [...free.entries()]
      .filter(([, f]) => f > 0)
      .sort(([a, fa], [b, fb]) => Number(gpu.get(b)) - Number(gpu.get(a)) || fb - fa || (a < b ? -1 : 1));
    const assignments: LayerRange[] = [];
    let start = 0;
    for (const [id, f] of candidates) {
      if (!model.wanted || start >= model.layerCount) break;
      const count = Math.min(f, model.layerCount - start);
      assignments.push({ nodeId: id, start, count });
      free.set(id, f - count);
      usage.set(id, (usage.get(id) ?? 0) + count);
      start += count;
    }
    return {
      id: model.id,
      assignments,
      placed: start,
      missing: (model.wanted ? model.layerCount : 0) - start,
      replaced: true,
    };
  });
  return { models, usage };
}

function check(label: string, input: readonly PlacementNode[], result: PlacementResult): void {
  const capacity = new Map(input.map((n) => [n.id, n.state === "evict" ? 0 : n.capacity]));
  for (const [id, used] of result.usage) {
    if (used > (capacity.get(id) ?? 0))
      throw new Error(`${label}: ${id} holds ${used} layers, capacity ${capacity.get(id)}`);
  }
  const missing = result.models.reduce((sum, m) => sum + m.missing, 0);
  if (missing > 0) throw new Error(`${label}: ${missing} layers unplaced although the cluster has room`);
}

function time<T>(run: () => T): { ms: number; value: T } {
  const started = performance.now();
  const value = run();
  return { ms: performance.now() - started, value };
}

const median = (values: readonly number[]) => {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = sorted.length >> 1;
  return sorted.length % 2 === 1
    ? (sorted[mid] as number)
    : ((sorted[mid - 1] as number) + (sorted[mid] as number)) / 2;
};

// --- the pure engine against the naive recomputation

const initial = placeLayers({ nodes, models: freshModels });
check("corral initial", nodes, initial);
const placedModels = freshModels.map((m, i) => ({ ...m, assignments: initial.models[i]?.assignments ?? [] }));
const [victim] = [...initial.usage.entries()].sort((a, b) => b[1] - a[1] || (a[0] < b[0] ? -1 : 1));
if (victim === undefined) throw new Error("nothing was placed");
const afterFailure = nodes.map((n) => (n.id === victim[0] ? { ...n, state: "evict" as const } : n));

const samples = {
  corralInitial: [] as number[],
  naiveInitial: [] as number[],
  corralFailure: [] as number[],
  naiveFailure: [] as number[],
  scratchFailure: [] as number[],
};
let corralAfter: PlacementResult | undefined;
let naiveAfter: PlacementResult | undefined;
let naiveBefore: PlacementResult | undefined;
let scratchAfter: PlacementResult | undefined;
for (let round = -2; round < rounds; round++) {
  const a = time(() => placeLayers({ nodes, models: freshModels }));
  const c = time(() => naivePlace({ nodes, models: freshModels }));
  const b = time(() => placeLayers({ nodes: afterFailure, models: placedModels }));
  const d = time(() => naivePlace({ nodes: afterFailure, models: placedModels }));
  const e = time(() => placeLayers({ nodes: afterFailure, models: freshModels }));
  if (round < 0) continue;
  samples.scratchFailure.push(e.ms);
  scratchAfter = e.value;
  samples.corralInitial.push(a.ms);
  samples.naiveInitial.push(c.ms);
  samples.corralFailure.push(b.ms);
  samples.naiveFailure.push(d.ms);
  corralAfter = b.value;
  naiveAfter = d.value;
  naiveBefore = c.value;
}
if (
  corralAfter === undefined ||
  naiveAfter === undefined ||
  naiveBefore === undefined ||
  scratchAfter === undefined
)
  throw new Error("no rounds");
check("corral after failure", afterFailure, corralAfter);
check("naive initial", nodes, naiveBefore);
check("naive after failure", afterFailure, naiveAfter);
const corralMoves = comparePlacements(initial.models, corralAfter.models);
// Each against its own placement before the failure.
const naiveMoves = comparePlacements(naiveBefore.models, naiveAfter.models);
const scratchMoves = comparePlacements(initial.models, scratchAfter.models);
const layersTotal = freshModels.reduce((s, m) => s + m.layerCount, 0);
const nodesUsed = (result: PlacementResult) => result.models.reduce((s, m) => s + m.assignments.length, 0);

// --- through the store: one reconcile pass, as the controller runs it

interface StoreFigures {
  nodes: number;
  seedMs: number;
  assignAllMs: number;
  idlePassMs: number;
  failurePassMs: number;
  moved: number;
  stayed: number;
}

async function storeBench(): Promise<StoreFigures> {
  const store = await SqliteStore.open({ path: ":memory:" });
  try {
    const clock = new ManualClock();
    const registry = new NodeRegistry(store, clock);
    const models = new ModelRegistry(store, clock, registry);
    const seeded = performance.now();
    const subset = nodes.slice(0, storeNodes);
    for (let i = 0; i < subset.length; i += 500) {
      await Promise.all(
        subset.slice(i, i + 500).map((n) =>
          registry.register({
            id: n.id,
            name: n.id,
            status: "ready",
            address: `10.${(Number(n.id.slice(5)) >> 8) & 255}.${Number(n.id.slice(5)) & 255}.1:7444`,
            resources: {
              cpuCores: 16,
              memoryMb: 65_536,
              maxLayers: n.capacity,
              gpus: n.gpu ? [{ name: "L40S", memoryMb: 49_152, uuid: `GPU-${n.id}` }] : [],
            },
          }),
        ),
      );
    }
    for (const m of freshModels) await models.add({ id: m.id, name: m.id, layerCount: m.layerCount });
    const seedMs = performance.now() - seeded;
    // Assigning one at a time is 100 passes; the figure is per pass.
    const assignStarted = performance.now();
    for (const m of freshModels) await models.assign(m.id);
    const assignAllMs = (performance.now() - assignStarted) / freshModels.length;
    const idleStarted = performance.now();
    const idleOutcome = await models.reconcile();
    const idlePassMs = performance.now() - idleStarted;
    if (idleOutcome.changed) throw new Error("a pass with nothing to do wrote something");
    const held = new Map<string, number>();
    for (const m of (await models.list()).models)
      for (const r of m.assignments) held.set(r.nodeId, (held.get(r.nodeId) ?? 0) + r.count);
    const [storeVictim] = [...held.entries()].sort((a, b) => b[1] - a[1]);
    if (storeVictim === undefined) throw new Error("nothing placed through the store");
    await registry.setStatus(storeVictim[0], "down");
    const failStarted = performance.now();
    const outcome = await models.reconcile();
    const failurePassMs = performance.now() - failStarted;
    if (outcome.models.some((m) => m.state !== "placed"))
      throw new Error("the store pass left a model unplaced");
    return {
      nodes: subset.length,
      seedMs,
      assignAllMs,
      idlePassMs,
      failurePassMs,
      moved: outcome.change.moved,
      stayed: outcome.change.stayed,
    };
  } finally {
    await store.close();
  }
}

const storeFigures = options["skip-store"] ? undefined : await storeBench();

// --- report

const fmt = (ms: number) => (ms < 10 ? ms.toFixed(2) : ms.toFixed(1));
const result = {
  machine: { cpus: os.cpus().length, model: os.cpus()[0]?.model ?? "?", node: process.version },
  input: {
    nodes: nodeCount,
    gpuNodes: nodes.filter((n) => n.gpu).length,
    models: modelCount,
    layers: layersTotal,
    seed,
    rounds,
  },
  failedNode: { id: victim[0], layers: victim[1] },
  corral: {
    initialMs: median(samples.corralInitial),
    failureMs: median(samples.corralFailure),
    nodesUsed: nodesUsed(initial),
    afterFailure: corralMoves,
  },
  naive: {
    initialMs: median(samples.naiveInitial),
    failureMs: median(samples.naiveFailure),
    nodesUsed: nodesUsed(naiveBefore),
    afterFailure: naiveMoves,
  },
  scratch: { failureMs: median(samples.scratchFailure), afterFailure: scratchMoves },
  store: storeFigures,
};

const line = (label: string, ours: number, base: number) =>
  `  ${label.padEnd(34)} corral ${fmt(ours).padStart(8)} ms   naive ${fmt(base).padStart(8)} ms   ×${(base / ours).toFixed(1)}`;
const out = [
  `placement: ${modelCount} models (${layersTotal} layers) over ${nodeCount} nodes (${result.input.gpuNodes} with GPUs), seed ${seed}, median of ${rounds}`,
  line("place all from nothing", result.corral.initialMs, result.naive.initialMs),
  line(`re-place after ${victim[0]} fails`, result.corral.failureMs, result.naive.failureMs),
  `  (corral's rules, recomputed from nothing after the failure: ${fmt(result.scratch.failureMs)} ms)`,
  `  layers the failed node held        ${victim[1]}`,
  `  layers moved after the failure     corral ${corralMoves.moved} (stayed ${corralMoves.stayed}, unplaced ${corralMoves.dropped})   naive ${naiveMoves.moved} (stayed ${naiveMoves.stayed})   from nothing ${scratchMoves.moved} (stayed ${scratchMoves.stayed})`,
  `  node ranges used (all models)      corral ${result.corral.nodesUsed}   naive ${result.naive.nodesUsed}`,
];
if (storeFigures !== undefined) {
  out.push(
    `through the store (SQLite in memory, ${storeFigures.nodes} node records, ModelRegistry.reconcile):`,
    `  assign one model (one pass)        ${fmt(storeFigures.assignAllMs)} ms`,
    `  pass with nothing to change        ${fmt(storeFigures.idlePassMs)} ms   (baseline: read + decide)`,
    `  pass after the node is down        ${fmt(storeFigures.failurePassMs)} ms   (moved ${storeFigures.moved}, stayed ${storeFigures.stayed})`,
    `  (seeding ${storeFigures.nodes} nodes and ${modelCount} models took ${(storeFigures.seedMs / 1000).toFixed(1)} s)`,
  );
}
console.log(out.join("\n"));
mkdirSync(".bench-out", { recursive: true });
writeFileSync(".bench-out/placement.json", `${JSON.stringify(result, null, 2)}\n`);
