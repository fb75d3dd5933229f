/**
 * Membership, constructed directly over an in-memory SQLite store and a manual clock: mass transitions
 * written in batches (one txn, so one revision, each) with the event loop free between them; a heartbeat
 * stream that ends without a goodbye makes its node suspect, then down; a goodbye, a second stream or a
 * comeback does not.
 */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { EventFeed } from "../../src/core/events/event-feed.ts";
import type { NodeRecord } from "../../src/core/nodes/node.ts";
import { defaults } from "../../src/defaults.ts";
import { Membership } from "../../src/engines/membership.ts";
import { createLogger } from "../../src/observability/logger.ts";
import { makeCore } from "../core/core-fixture.ts";
import { eventually } from "../helpers/agent.ts";

async function fleet(count: number, liveness: Record<string, string | number> = {}) {
  const core = await makeCore();
  const nodes: NodeRecord[] = [];
  for (let i = 0; i < count; i++)
    nodes.push(
      await core.registry.register({ name: `n${i}`, status: "ready", address: `10.0.0.${i % 250}:1` }),
    );
  const feed = new EventFeed(core.store);
  const membership = new Membership({
    registry: core.registry,
    feed,
    clock: core.clock,
    logger: createLogger({ level: "silent" }),
    controllerNodeId: "controller",
    liveness: { minInterval: "1s", maxHeartbeatsPerSecond: 1_000_000, suspectAfterMissed: 2, ...liveness },
    sweepEveryMs: 5,
  });
  await membership.start();
  const statuses = async () => {
    const { nodes: now } = await core.registry.list();
    return new Map(now.map((n) => [n.name, n.status]));
  };
  return Object.assign(core, { nodes, feed, membership, statuses });
}

describe("Membership", () => {
  it("writes a mass transition in batches of liveness.writeBatch, one revision each, yielding between them", async () => {
    await using core = await fleet(200);
    try {
      const watch = new AbortController();
      const revisions = new Map<number, number>();
      // Marks where the event loop turned: an immediate queued when the first batch is announced runs
      // before the last batch is written only if the sweep yields between batches.
      let turnedAt: number | undefined;
      const following = (async () => {
        let suspects = 0;
        for await (const event of core.feed.watch({ kinds: ["node"], signal: watch.signal })) {
          if (event.node?.status !== "suspect") continue;
          if (suspects === 0)
            setImmediate(async () => {
              turnedAt = await core.store.revision();
            });
          revisions.set(event.revision, (revisions.get(event.revision) ?? 0) + 1);
          if (++suspects === 200) return;
        }
      })();
      core.clock.advance(2_001);
      await following;
      watch.abort();
      const batch = defaults.liveness.writeBatch;
      assert.equal(revisions.size, Math.ceil(200 / batch), "one txn per batch");
      assert.ok([...revisions.values()].every((n) => n <= batch));
      const last = Math.max(...revisions.keys());
      assert.ok(
        turnedAt !== undefined && turnedAt < last,
        `the loop turned mid-storm (at ${turnedAt} of ${last})`,
      );
      assert.ok([...(await core.statuses()).values()].every((s) => s === "suspect"));
    } finally {
      await core.membership.close();
    }
  });

  it("marks a node whose stream ends without a goodbye suspect at once, then down after streamLostDownAfter", async () => {
    await using core = await fleet(3, { minInterval: "1m", streamLostDownAfter: "20ms" });
    try {
      const [lost, polite, doubled] = core.nodes;
      assert.ok(lost && polite && doubled);
      core.membership.openStream(lost.id).end(false);
      core.membership.openStream(polite.id).end(true);
      // A node that reconnected before its old stream was found dead has another stream open here.
      const second = core.membership.openStream(doubled.id);
      core.membership.openStream(doubled.id).end(false);
      await eventually(async () => ((await core.statuses()).get(lost.name) === "suspect" ? true : undefined));
      core.clock.advance(25);
      await eventually(async () => ((await core.statuses()).get(lost.name) === "down" ? true : undefined));
      const now = await core.statuses();
      assert.equal(now.get(polite.name), "ready", "a goodbye is no signal");
      assert.equal(now.get(doubled.name), "ready", "another open stream is no signal");
      second.end(true);
    } finally {
      await core.membership.close();
    }
  });

  it("gives a node the sweep already suspects the short grace once its stream is lost (a frozen agent)", async () => {
    await using core = await fleet(1, { streamLostDownAfter: "20ms" });
    try {
      const [node] = core.nodes;
      assert.ok(node);
      const stream = core.membership.openStream(node.id);
      core.clock.advance(2_001);
      await eventually(async () => ((await core.statuses()).get(node.name) === "suspect" ? true : undefined));
      stream.end(false);
      core.clock.advance(25);
      await eventually(async () => ((await core.statuses()).get(node.name) === "down" ? true : undefined));
    } finally {
      await core.membership.close();
    }
  });

  it("does not mark down a node heard again after its stream was lost", async () => {
    await using core = await fleet(1, { minInterval: "1m", streamLostDownAfter: "20ms" });
    try {
      const [node] = core.nodes;
      assert.ok(node);
      core.membership.openStream(node.id).end(false);
      await eventually(async () => ((await core.statuses()).get(node.name) === "suspect" ? true : undefined));
      core.clock.advance(5);
      await core.membership.heartbeat(node.id);
      core.clock.advance(30);
      await new Promise((resolve) => setTimeout(resolve, 100));
      assert.equal((await core.statuses()).get(node.name), "ready");
    } finally {
      await core.membership.close();
    }
  });

  it("after a restart, marks nothing for streams it never held and gives every node a full grace", async () => {
    await using core = await fleet(5, { minInterval: "1m" });
    await core.membership.close();
    const again = new Membership({
      registry: core.registry,
      feed: core.feed,
      clock: core.clock,
      logger: createLogger({ level: "silent" }),
      controllerNodeId: "controller",
      liveness: { minInterval: "1m", streamLostDownAfter: "20ms" },
      sweepEveryMs: 5,
    });
    await again.start();
    try {
      core.clock.advance(60_000);
      await new Promise((resolve) => setTimeout(resolve, 100));
      assert.ok([...(await core.statuses()).values()].every((s) => s === "ready"));
    } finally {
      await again.close();
    }
  });
});
