/**
 * PlacementReconciler, constructed directly over an in-memory SQLite store: node events cost no pass
 * while no model exists, and a burst of changes costs one pass per burst, not one per event.
 */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { EventFeed } from "../../src/core/events/event-feed.ts";
import { ModelRegistry } from "../../src/core/models/model-registry.ts";
import { PlacementReconciler } from "../../src/engines/placement-reconciler.ts";
import { createLogger } from "../../src/observability/logger.ts";
import { makeCore } from "../core/core-fixture.ts";
import { eventually } from "../helpers/agent.ts";

async function cluster(count: number) {
  const core = await makeCore();
  const ids: string[] = [];
  for (let i = 0; i < count; i++)
    ids.push(
      (
        await core.registry.register({
          name: `n${i}`,
          status: "ready",
          resources: { cpuCores: 8, memoryMb: 16_384, maxLayers: 10 },
        })
      ).id,
    );
  const models = new ModelRegistry(core.store, core.clock, core.registry);
  const reconciler = new PlacementReconciler({
    models,
    feed: new EventFeed(core.store),
    logger: createLogger({ level: "silent" }),
  });
  /** Every node to `status`, 32 per txn, as a liveness sweep writes them. */
  const all = async (status: "down" | "ready") => {
    for (let i = 0; i < ids.length; i += 32)
      await core.registry.setStatuses(ids.slice(i, i + 32).map((id) => ({ id, status })));
  };
  return Object.assign(core, { ids, models, reconciler, all });
}

describe("PlacementReconciler", () => {
  it("runs no pass for node events while no model exists, and runs again once one does", async () => {
    await using core = await cluster(100);
    core.reconciler.start();
    try {
      await core.reconciler.settled();
      const atStart = core.reconciler.passes;
      await core.all("down");
      await core.all("ready");
      await new Promise((resolve) => setTimeout(resolve, 200));
      await core.reconciler.settled();
      assert.equal(core.reconciler.passes, atStart, "200 status changes, no model: no pass");
      await core.models.add({ name: "m", layerCount: 10 });
      await core.models.assign("m");
      await core.all("down");
      await eventually(async () => (core.reconciler.passes > atStart ? true : undefined));
    } finally {
      await core.reconciler.close();
    }
  });

  it("coalesces a burst of batches into fewer passes than batches, and still re-places", async () => {
    await using core = await cluster(96);
    await core.models.add({ name: "m", layerCount: 10 });
    const placed = (await core.models.assign("m")).model;
    assert.equal(placed.state, "placed");
    core.reconciler.start();
    try {
      await core.reconciler.settled();
      const atStart = core.reconciler.passes;
      await core.all("down");
      await eventually(async () => ((await core.models.get("m")).state !== "placed" ? true : undefined));
      await core.reconciler.settled();
      const passes = core.reconciler.passes - atStart;
      assert.ok(passes >= 1 && passes < 3, `three batches of changes made ${passes} passes`);
      await core.all("ready");
      await eventually(async () => ((await core.models.get("m")).state === "placed" ? true : undefined));
    } finally {
      await core.reconciler.close();
    }
  });
});
