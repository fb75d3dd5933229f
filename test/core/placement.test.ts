import assert from "node:assert/strict";
import { describe, it } from "node:test";
import fc from "fast-check";
import {
  comparePlacements,
  type LayerRange,
  type PlacementModel,
  type PlacementNode,
  type PlacementResult,
  placeLayers,
} from "../../src/core/models/placement.ts";

/** Fixed seed so a failure reproduces; fast-check prints the counterexample and the path. */
const runs = { numRuns: 300, seed: 20_240_607 };

const nodeArb = (state: fc.Arbitrary<PlacementNode["state"]> = fc.constant("eligible")) =>
  fc.record({
    capacity: fc.integer({ min: 0, max: 40 }),
    gpu: fc.boolean(),
    state,
  });

const clusterArb = (
  options: { minNodes?: number; maxNodes?: number; state?: fc.Arbitrary<PlacementNode["state"]> } = {},
) =>
  fc
    .array(nodeArb(options.state), { minLength: options.minNodes ?? 1, maxLength: options.maxNodes ?? 24 })
    .map((nodes) => nodes.map((node, i) => ({ id: `n${String(i).padStart(3, "0")}`, ...node })));

const modelsArb = fc
  .array(fc.record({ layerCount: fc.integer({ min: 1, max: 80 }), wanted: fc.boolean() }), {
    minLength: 1,
    maxLength: 8,
  })
  .map((models) => models.map((model, i) => ({ id: `m${i}`, ...model, assignments: [] as LayerRange[] })));

/** The invariants every placement must hold, whatever the input. */
function checkInvariants(
  nodes: readonly PlacementNode[],
  models: readonly PlacementModel[],
  result: PlacementResult,
) {
  const byId = new Map(nodes.map((node) => [node.id, node]));
  const usage = new Map<string, number>();
  assert.equal(result.models.length, models.length);
  for (const [i, model] of models.entries()) {
    const placed = result.models[i];
    assert.ok(placed !== undefined);
    assert.equal(placed.id, model.id);
    if (!model.wanted) assert.deepEqual(placed.assignments, [], `${model.id} is not wanted but holds layers`);
    const seenNodes = new Set<string>();
    let at = -1;
    for (const range of placed.assignments) {
      assert.ok(range.count > 0, "empty range");
      assert.ok(range.start >= 0 && range.start + range.count <= model.layerCount, "range outside the model");
      assert.ok(range.start >= at, `overlapping or unsorted ranges in ${model.id}`);
      at = range.start + range.count;
      assert.ok(!seenNodes.has(range.nodeId), `${range.nodeId} holds two ranges of ${model.id}`);
      seenNodes.add(range.nodeId);
      const node = byId.get(range.nodeId);
      assert.ok(node !== undefined, `layers on unknown node ${range.nodeId}`);
      assert.notEqual(node.state, "evict", `layers on evicted node ${range.nodeId}`);
      usage.set(range.nodeId, (usage.get(range.nodeId) ?? 0) + range.count);
    }
    assert.equal(
      placed.placed,
      placed.assignments.reduce((sum, r) => sum + r.count, 0),
    );
    assert.equal(placed.missing, (model.wanted ? model.layerCount : 0) - placed.placed);
  }
  for (const [nodeId, used] of usage) {
    const node = byId.get(nodeId) as PlacementNode;
    assert.ok(used <= node.capacity, `${nodeId} over capacity: ${used} > ${node.capacity}`);
    assert.equal(result.usage.get(nodeId), used);
  }
  for (const nodeId of result.usage.keys()) assert.ok(usage.has(nodeId));
}

const wantedLayers = (models: readonly PlacementModel[]) =>
  models.reduce((sum, model) => sum + (model.wanted ? model.layerCount : 0), 0);
const eligibleCapacity = (nodes: readonly PlacementNode[]) =>
  nodes.reduce((sum, node) => sum + (node.state === "eligible" ? node.capacity : 0), 0);

/** A placement result fed back as the current assignments. */
function withAssignments(models: readonly PlacementModel[], result: PlacementResult): PlacementModel[] {
  return models.map((model, i) => ({ ...model, assignments: result.models[i]?.assignments ?? [] }));
}

describe("placement (pure)", () => {
  it("never over-commits a node, never places on an evicted node, one contiguous range per node", () => {
    fc.assert(
      fc.property(
        clusterArb({ state: fc.constantFrom("eligible", "eligible", "keep", "evict") }),
        modelsArb,
        (nodes, models) => {
          const first = placeLayers({ nodes, models });
          checkInvariants(nodes, models, first);
          // Again on top of itself, with some nodes changed: still sound.
          const changed = nodes.map((node, i) =>
            i % 3 === 0
              ? { ...node, state: "evict" as const }
              : i % 3 === 1
                ? { ...node, capacity: Math.floor(node.capacity / 2) }
                : node,
          );
          const again = withAssignments(models, first);
          checkInvariants(changed, again, placeLayers({ nodes: changed, models: again }));
        },
      ),
      runs,
    );
  });

  it("places every layer when the eligible capacity allows (fresh, and again after nodes fail)", () => {
    fc.assert(
      fc.property(
        clusterArb({ minNodes: 2 }),
        modelsArb,
        fc.integer({ min: 0, max: 1_000 }),
        (nodes, models, pick) => {
          const first = placeLayers({ nodes, models });
          if (eligibleCapacity(nodes) >= wantedLayers(models)) {
            for (const model of first.models)
              assert.equal(model.missing, 0, `${model.id} missing ${model.missing}`);
          }
          const failed = nodes[pick % nodes.length] as PlacementNode;
          const after = nodes.map((node) =>
            node.id === failed.id ? { ...node, state: "evict" as const } : node,
          );
          const second = placeLayers({ nodes: after, models: withAssignments(models, first) });
          if (eligibleCapacity(after) >= wantedLayers(models)) {
            for (const model of second.models)
              assert.equal(
                model.missing,
                0,
                `${model.id} missing ${model.missing} after ${failed.id} failed`,
              );
          }
        },
      ),
      runs,
    );
  });

  it("moves only the layers of a failed node (minimal movement)", () => {
    fc.assert(
      fc.property(
        clusterArb({ minNodes: 2 }),
        modelsArb,
        fc.integer({ min: 0, max: 1_000 }),
        (nodes, models, pick) => {
          const first = placeLayers({ nodes, models });
          const failed = nodes[pick % nodes.length] as PlacementNode;
          const after = nodes.map((node) =>
            node.id === failed.id ? { ...node, state: "evict" as const } : node,
          );
          const current = withAssignments(models, first);
          const second = placeLayers({ nodes: after, models: current });
          const onFailed = first.usage.get(failed.id) ?? 0;
          // Layer by layer: what was not on the failed node stays where it was, unless the model had to be
          // placed afresh to be placed whole.
          for (const [i, model] of second.models.entries()) {
            if (model.replaced) {
              assert.equal(model.missing, 0, "a model is only placed afresh when that places all of it");
              continue;
            }
            const before = first.models[i]?.assignments ?? [];
            const change = comparePlacements([{ id: model.id, assignments: before }], [model]);
            const beforeOnFailed = before
              .filter((r) => r.nodeId === failed.id)
              .reduce((s, r) => s + r.count, 0);
            assert.equal(
              change.stayed,
              (first.models[i]?.placed ?? 0) - beforeOnFailed,
              `${model.id}: a layer on a healthy node moved`,
            );
          }
          const total = comparePlacements(first.models, second.models);
          const replacedLayers = second.models.filter((m) => m.replaced).reduce((s, m) => s + m.placed, 0);
          assert.ok(
            total.moved + total.dropped <= onFailed + replacedLayers,
            "more layers moved than the failed node held",
          );
          // Placing again with nothing changed moves nothing.
          const third = placeLayers({ nodes: after, models: withAssignments(models, second) });
          const still = comparePlacements(second.models, third.models);
          assert.equal(still.moved + still.dropped, 0);
        },
      ),
      runs,
    );
  });

  it("uses GPU nodes first, and the fewest nodes within a class", () => {
    fc.assert(
      fc.property(
        clusterArb({ minNodes: 1, maxNodes: 30 }),
        fc.integer({ min: 1, max: 200 }),
        (nodes, layerCount) => {
          const result = placeLayers({
            nodes,
            models: [{ id: "m", layerCount, wanted: true, assignments: [] }],
          });
          const placed = result.models[0];
          assert.ok(placed !== undefined);
          const byId = new Map(nodes.map((node) => [node.id, node]));
          const usesCpu = placed.assignments.some((r) => !byId.get(r.nodeId)?.gpu);
          const gpuFree = nodes.filter((n) => n.gpu).map((n) => n.capacity - (result.usage.get(n.id) ?? 0));
          if (usesCpu)
            assert.ok(
              gpuFree.every((f) => f === 0),
              "a CPU node was used while a GPU node had room",
            );
          // Fewest nodes: as many as the largest nodes of each class need, GPU class exhausted first.
          const gpu = nodes
            .filter((n) => n.gpu)
            .map((n) => n.capacity)
            .sort((a, b) => b - a);
          const cpu = nodes
            .filter((n) => !n.gpu)
            .map((n) => n.capacity)
            .sort((a, b) => b - a);
          const minimal = minimalNodes(gpu, cpu, layerCount);
          assert.equal(
            placed.assignments.length,
            minimal,
            `used ${placed.assignments.length} nodes, ${minimal} suffice`,
          );
        },
      ),
      runs,
    );
  });

  it("is deterministic and does not depend on the order nodes are given in", () => {
    fc.assert(
      fc.property(clusterArb(), modelsArb, (nodes, models) => {
        const a = placeLayers({ nodes, models });
        const b = placeLayers({ nodes: [...nodes].reverse(), models });
        assert.deepEqual(a.models, b.models);
      }),
      runs,
    );
  });

  it("keeps a suspect node's layers but gives it nothing new", () => {
    const nodes: PlacementNode[] = [
      { id: "a", capacity: 10, gpu: false, state: "keep" },
      { id: "b", capacity: 10, gpu: false, state: "eligible" },
    ];
    const models: PlacementModel[] = [
      { id: "m", layerCount: 12, wanted: true, assignments: [{ nodeId: "a", start: 0, count: 6 }] },
    ];
    const result = placeLayers({ nodes, models });
    assert.deepEqual(result.models[0]?.assignments, [
      { nodeId: "a", start: 0, count: 6 },
      { nodeId: "b", start: 6, count: 6 },
    ]);
  });

  it("reports what is missing when capacity is short, and never over-commits to hide it", () => {
    const nodes: PlacementNode[] = [
      { id: "gpu-1", capacity: 8, gpu: true, state: "eligible" },
      { id: "cpu-1", capacity: 4, gpu: false, state: "eligible" },
    ];
    const result = placeLayers({
      nodes,
      models: [{ id: "big", layerCount: 20, wanted: true, assignments: [] }],
    });
    assert.deepEqual(result.models[0], {
      id: "big",
      assignments: [
        { nodeId: "gpu-1", start: 0, count: 8 },
        { nodeId: "cpu-1", start: 8, count: 4 },
      ],
      placed: 12,
      missing: 8,
      replaced: false,
    });
  });

  it("fills a hole from a neighbouring range before taking a new node", () => {
    const nodes: PlacementNode[] = [
      { id: "a", capacity: 20, gpu: true, state: "eligible" },
      { id: "b", capacity: 10, gpu: true, state: "evict" },
      { id: "c", capacity: 10, gpu: true, state: "eligible" },
      { id: "d", capacity: 30, gpu: true, state: "eligible" },
    ];
    const models: PlacementModel[] = [
      {
        id: "m",
        layerCount: 30,
        wanted: true,
        assignments: [
          { nodeId: "a", start: 0, count: 10 },
          { nodeId: "b", start: 10, count: 10 },
          { nodeId: "c", start: 20, count: 10 },
        ],
      },
    ];
    const result = placeLayers({ nodes, models });
    // a has 10 free and touches the hole: it grows, no new node joins the model.
    assert.deepEqual(result.models[0]?.assignments, [
      { nodeId: "a", start: 0, count: 20 },
      { nodeId: "c", start: 20, count: 10 },
    ]);
  });
});

/** The fewest nodes that hold `layers`: GPU nodes largest first; CPU nodes only once GPUs are full. */
function minimalNodes(gpu: readonly number[], cpu: readonly number[], layers: number): number {
  const gpuTotal = gpu.reduce((s, c) => s + c, 0);
  const take = (sizes: readonly number[], need: number) => {
    let count = 0;
    for (const size of sizes) {
      if (need <= 0) break;
      if (size === 0) continue;
      count++;
      need -= size;
    }
    return { count, left: Math.max(0, need) };
  };
  if (gpuTotal >= layers) return take(gpu, layers).count;
  const gpuCount = gpu.filter((c) => c > 0).length;
  return gpuCount + take(cpu, layers - gpuTotal).count;
}
