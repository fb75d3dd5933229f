import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { ErrorCode } from "../../src/base/errors.ts";
import { EventFeed } from "../../src/core/events/event-feed.ts";
import { ModelRegistry } from "../../src/core/models/model-registry.ts";
import type { NodeRecord } from "../../src/core/nodes/node.ts";
import { PlacementReconciler } from "../../src/engines/placement-reconciler.ts";
import { createLogger } from "../../src/observability/logger.ts";
import { makeCore, rejectsWith } from "./core-fixture.ts";

async function cluster() {
  const core = await makeCore();
  const models = new ModelRegistry(core.store, core.clock, core.registry);
  const node = (name: string, maxLayers: number, extra: { gpu?: boolean; usedLayers?: number } = {}) =>
    core.registry.register({
      name,
      status: "ready",
      resources: {
        cpuCores: 8,
        memoryMb: 16_384,
        maxLayers,
        usedLayers: extra.usedLayers ?? 0,
        gpus: extra.gpu ? [{ name: "A100", memoryMb: 40_960, uuid: `GPU-${name}` }] : [],
      },
    });
  const used = async (name: string) => (await core.registry.get(name)).resources.usedLayers;
  return Object.assign(core, { models, node, used });
}

/** used_layers of every node equals what the models' assignments put on it (plus declared use). */
async function assertConsistent(
  core: Awaited<ReturnType<typeof cluster>>,
  declared: Record<string, number> = {},
) {
  const { models } = await core.models.list();
  const placed = new Map<string, number>();
  for (const model of models)
    for (const range of model.assignments)
      placed.set(range.nodeId, (placed.get(range.nodeId) ?? 0) + range.count);
  const { nodes } = await core.registry.list();
  for (const node of nodes) {
    const expected = (placed.get(node.id) ?? 0) + (declared[node.name] ?? 0);
    assert.equal(
      node.resources.usedLayers,
      expected,
      `${node.name}: used_layers ${node.resources.usedLayers}, placed ${expected}`,
    );
    assert.ok(
      node.resources.usedLayers <= Math.max(node.resources.maxLayers, declared[node.name] ?? 0),
      `${node.name} over capacity`,
    );
  }
}

describe("ModelRegistry", () => {
  it("adds, finds by id or name, lists and refuses a second model of the same name", async () => {
    await using core = await cluster();
    const model = await core.models.add({
      name: "llama-7b",
      version: "2",
      layerCount: 32,
      sizeBytes: 13_000_000_000,
      filePath: "/models/llama.gguf",
    });
    assert.equal(model.state, "unassigned");
    assert.deepEqual(await core.models.get("llama-7b"), model);
    assert.deepEqual(await core.models.get(model.id), model);
    assert.deepEqual(
      (await core.models.list()).models.map((m) => m.name),
      ["llama-7b"],
    );
    await rejectsWith(
      core.models.add({ name: "llama-7b", layerCount: 4 }),
      ErrorCode.AlreadyExists,
      "llama-7b",
    );
    await rejectsWith(core.models.get("nope"), ErrorCode.NotFound, "nope");
    await rejectsWith(
      core.models.add({ name: "bad name", layerCount: 4 }),
      ErrorCode.InvalidArgument,
      "whitespace",
    );
    await rejectsWith(
      core.models.add({ name: "zero", layerCount: 0 }),
      ErrorCode.InvalidArgument,
      "layer_count",
    );
    await rejectsWith(
      core.models.add({ name: "neg", layerCount: 2, sizeBytes: -1 }),
      ErrorCode.InvalidArgument,
      "size_bytes",
    );
  });

  it("assigns: GPU nodes first, fewest nodes, used_layers written in the same revision", async () => {
    await using core = await cluster();
    await core.node("cpu-big", 100);
    await core.node("gpu-a", 20, { gpu: true });
    await core.node("gpu-b", 16, { gpu: true });
    await core.models.add({ name: "m", layerCount: 30 });
    const { model, outcome } = await core.models.assign("m");
    assert.equal(model.state, "placed");
    const names = new Map((await core.registry.list()).nodes.map((n: NodeRecord) => [n.id, n.name]));
    assert.deepEqual(
      model.assignments.map((r) => [names.get(r.nodeId), r.start, r.count]),
      [
        ["gpu-a", 0, 20],
        ["gpu-b", 20, 10],
      ],
    );
    assert.match(model.message, /^placed: all 30 layers on 2 nodes: gpu-a \[0-19\], gpu-b \[20-29\]$/);
    assert.equal(outcome.change.added, 30);
    assert.equal(await core.used("gpu-a"), 20);
    assert.equal(await core.used("gpu-b"), 10);
    assert.equal(await core.used("cpu-big"), 0);
    // The model and the nodes changed under one revision.
    const changes = await core.store.changes(outcome.revision);
    assert.ok(changes.every((event) => event.revision === outcome.revision));
    assert.deepEqual(new Set(changes.map((e) => e.key.split("/")[1])), new Set(["models", "nodes"]));
    await assertConsistent(core);
  });

  it("marks a model partially placed with a clear message, and fills it when room appears", async () => {
    await using core = await cluster();
    await core.node("small", 10);
    await core.models.add({ name: "big", layerCount: 25 });
    const { model } = await core.models.assign("big");
    assert.equal(model.state, "partial");
    assert.match(
      model.message,
      /partially placed: 10 of 25 layers on 1 node: small \[0-9\]; 15 layers wait for free capacity/,
    );
    assert.equal(await core.used("small"), 10);
    await core.node("more", 40);
    const outcome = await core.models.reconcile();
    assert.equal(outcome.changed, true);
    const filled = await core.models.get("big");
    assert.equal(filled.state, "placed");
    assert.equal(filled.assignments[0]?.count, 10, "the layers already placed stay");
    await assertConsistent(core);
  });

  it("says so when nothing can be placed", async () => {
    await using core = await cluster();
    await core.models.add({ name: "lonely", layerCount: 3 });
    const { model } = await core.models.assign("lonely");
    assert.equal(model.state, "unplaced");
    assert.match(model.message, /none of its 3 layers found free capacity/);
  });

  it("re-places the layers of a node that goes down, moving nothing else", async () => {
    await using core = await cluster();
    await core.node("a", 10);
    await core.node("b", 10);
    await core.node("c", 10);
    await core.models.add({ name: "m", layerCount: 20 });
    const before = (await core.models.assign("m")).model;
    const onA = before.assignments.find((r) => r.nodeId === (before.assignments[0]?.nodeId ?? ""));
    assert.ok(onA !== undefined);
    const victim = (await core.registry.get(onA.nodeId)).name;
    await core.registry.setStatus(victim, "down");
    const outcome = await core.models.reconcile();
    assert.equal(outcome.change.moved, 10);
    assert.equal(outcome.change.stayed, 10);
    const after = await core.models.get("m");
    assert.equal(after.state, "placed");
    assert.ok(after.assignments.every((r) => r.nodeId !== onA.nodeId));
    assert.equal(await core.used(victim), 0);
    await assertConsistent(core);
  });

  it("keeps declared use beyond placement, and repairs a writer that lowers used_layers below it", async () => {
    await using core = await cluster();
    await core.node("shared", 20, { usedLayers: 5 });
    await core.models.add({ name: "m", layerCount: 20 });
    const { model } = await core.models.assign("m");
    assert.equal(model.state, "partial", "only 15 of 20 are free");
    assert.equal(await core.used("shared"), 20);
    await assertConsistent(core, { shared: 5 });
    // An agent re-reports its resources with used_layers 0: the 15 placed are written back, and the 5
    // declared before are free now, so the model takes them.
    await core.registry.update("shared", {
      resources: { cpuCores: 8, memoryMb: 16_384, maxLayers: 20, usedLayers: 0 },
    });
    const outcome = await core.models.reconcile();
    assert.equal(outcome.change.added, 5);
    assert.equal(await core.used("shared"), 20);
    assert.equal((await core.models.get("m")).state, "placed");
    await assertConsistent(core);
  });

  it("drains a node (its layers move in the same txn that marks it) and undrains it", async () => {
    await using core = await cluster();
    await core.node("a", 10);
    await core.node("b", 10);
    await core.models.add({ name: "m", layerCount: 8 });
    const placed = (await core.models.assign("m")).model;
    const holder = (await core.registry.get(placed.assignments[0]?.nodeId ?? "")).name;
    const other = holder === "a" ? "b" : "a";
    const { outcome } = await core.models.drain(holder);
    assert.equal(outcome.change.moved, 8);
    assert.deepEqual([...(await core.models.drained())], [(await core.registry.get(holder)).id]);
    assert.equal(await core.used(holder), 0);
    assert.equal(await core.used(other), 8);
    await core.models.undrain(holder);
    assert.equal((await core.models.drained()).size, 0);
    assert.equal(await core.used(other), 8, "nothing moves back by itself");
    await assertConsistent(core);
  });

  it("unassigns and removes, freeing the layers at once", async () => {
    await using core = await cluster();
    await core.node("a", 10);
    await core.models.add({ name: "x", layerCount: 6 });
    await core.models.add({ name: "y", layerCount: 6 });
    await core.models.assign("x");
    assert.equal((await core.models.assign("y")).model.state, "partial");
    const { model } = await core.models.unassign("x");
    assert.equal(model.state, "unassigned");
    assert.deepEqual(model.assignments, []);
    assert.equal(
      (await core.models.get("y")).state,
      "placed",
      "the freed room goes to the model waiting for it",
    );
    await core.models.remove("y");
    await rejectsWith(core.models.get("y"), ErrorCode.NotFound);
    assert.equal(await core.used("a"), 0);
    await core.models.add({ name: "y", layerCount: 2 });
    await assertConsistent(core);
  });

  it("never over-commits under concurrent assigns", async () => {
    await using core = await cluster();
    await core.node("a", 10);
    await core.node("b", 10);
    for (let i = 0; i < 6; i++) await core.models.add({ name: `m${i}`, layerCount: 4 });
    // Two registries over one store: their passes race through compare-and-swap, not a shared lock.
    const other = new ModelRegistry(core.store, core.clock, core.registry);
    await Promise.all(
      Array.from({ length: 6 }, (_, i) => (i % 2 === 0 ? core.models : other).assign(`m${i}`)),
    );
    const { models } = await core.models.list();
    assert.equal(
      models.reduce((sum, m) => sum + m.assignments.reduce((s, r) => s + r.count, 0), 0),
      20,
    );
    assert.equal(models.filter((m) => m.state === "placed").length, 5);
    await assertConsistent(core);
  });
});

describe("PlacementReconciler", () => {
  it("re-places after a node goes down, and repairs used_layers, following the feed", async () => {
    await using core = await cluster();
    await core.node("a", 10);
    await core.node("b", 10);
    await core.models.add({ name: "m", layerCount: 10 });
    const holder = (await core.models.assign("m")).model.assignments[0]?.nodeId ?? "";
    const passes: number[] = [];
    const reconciler = new PlacementReconciler({
      models: core.models,
      feed: new EventFeed(core.store),
      logger: createLogger({ level: "silent" }),
      onPass: (outcome) => passes.push(outcome.revision),
    });
    reconciler.start();
    try {
      await reconciler.settled();
      const before = reconciler.passes;
      await core.registry.setStatus(holder, "down");
      const moved = await waitFor(async () => {
        const model = await core.models.get("m");
        return model.state === "placed" && model.assignments.every((r) => r.nodeId !== holder)
          ? model
          : undefined;
      });
      assert.equal(moved.assignments.length, 1);
      await reconciler.settled();
      // A change that placement does not depend on (metadata) runs no pass; its own writes are skipped.
      const passesNow = reconciler.passes;
      assert.ok(passesNow > before);
      await core.registry.update(moved.assignments[0]?.nodeId ?? "", { labels: { zone: "x" } });
      await new Promise((resolve) => setTimeout(resolve, 100));
      await reconciler.settled();
      assert.equal(reconciler.passes, passesNow);
      assert.equal(passes.length, 1, "one pass changed placement");
      await assertConsistent(core);
    } finally {
      await reconciler.close();
    }
    assert.equal(core.store.activeWatchers(), 0);
  });
});

async function waitFor<T>(check: () => Promise<T | undefined>, timeoutMs = 5_000): Promise<T> {
  const until = Date.now() + timeoutMs;
  while (Date.now() < until) {
    const value = await check();
    if (value !== undefined) return value;
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
  throw new Error("timed out");
}
