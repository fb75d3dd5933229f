import assert from "node:assert/strict";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, it } from "node:test";
import { setImmediate as nextTurn } from "node:timers/promises";
import { ManualClock } from "../../src/base/clock.ts";
import { ErrorCode } from "../../src/base/errors.ts";
import type { ClusterEvent, NodeEvent } from "../../src/core/events/cluster-event.ts";
import { EventFeed } from "../../src/core/events/event-feed.ts";
import { NodeRegistry } from "../../src/core/nodes/node-registry.ts";
import { SqliteStore } from "../../src/store/sqlite/sqlite-store.ts";
import { makeCore, rejectsWith } from "./core-fixture.ts";

/** Pulls exactly `count` events; every pull brings one, so this ends. */
async function take(iterator: AsyncIterator<ClusterEvent>, count: number): Promise<NodeEvent[]> {
  const events: NodeEvent[] = [];
  for (let i = 0; i < count; i++) {
    const next = await iterator.next();
    if (next.done === true) assert.fail(`the feed ended after ${events.length} of ${count} events`);
    if (next.value.kind !== "node") assert.fail(`expected a node event, got ${next.value.type}`);
    events.push(next.value);
  }
  return events;
}

const brief = (event: NodeEvent) => `${event.revision} ${event.type} ${event.node?.name ?? "-"}`;

describe("EventFeed", () => {
  it("turns node writes into ordered, revisioned events with the records before and after", async () => {
    await using core = await makeCore();
    const feed = new EventFeed(core.store);
    const node = await core.registry.register({ name: "a" });
    await core.registry.update(node.id, { name: "b" });
    await core.registry.remove(node.id);
    const controller = new AbortController();
    const events = await take(
      feed.watch({ fromRevision: 1, signal: controller.signal })[Symbol.asyncIterator](),
      3,
    );
    controller.abort();
    assert.deepEqual(events.map(brief), ["1 node.put a", "2 node.put b", "3 node.deleted b"]);
    assert.equal(events[1]?.previous?.name, "a");
    assert.equal(events[0]?.previous, undefined);
    assert.ok(events.every((event) => event.kind === "node" && event.key === `/nodes/${node.id}`));
  });

  it("starts after the current revision when no revision is given", async () => {
    await using core = await makeCore();
    const feed = new EventFeed(core.store);
    await core.registry.register({ name: "before" });
    const controller = new AbortController();
    const iterator = feed.watch({ signal: controller.signal, kinds: ["node"] })[Symbol.asyncIterator]();
    const first = iterator.next();
    await nextTurn();
    await core.registry.register({ name: "after" });
    const event = await first;
    assert.equal(event.done, false);
    assert.equal(event.value && brief(event.value), "2 node.put after");
    controller.abort();
    assert.equal((await iterator.next()).done, true);
    assert.equal(core.store.activeWatchers(), 0);
  });

  it("refuses an unknown kind", async () => {
    await using core = await makeCore();
    const feed = new EventFeed(core.store);
    const iterator = feed.watch({ kinds: ["pipeline" as never], signal: new AbortController().signal });
    await rejectsWith(iterator[Symbol.asyncIterator]().next(), ErrorCode.InvalidArgument, "pipeline");
  });

  it("drops a subscriber that falls behind, and resuming from the revision it names loses nothing", async () => {
    await using core = await makeCore();
    const feed = new EventFeed(core.store, { maxLag: 3 });
    const node = await core.registry.register({ name: "n" });
    const controller = new AbortController();
    const iterator = feed.watch({ signal: controller.signal })[Symbol.asyncIterator]();
    const first = iterator.next();
    await nextTurn();
    await core.registry.touch(node.id);
    const delivered = [await first];
    for (let i = 0; i < 10; i++) {
      core.clock.advance(1);
      await core.registry.touch(node.id);
    }
    const error = await rejectsWith(iterator.next(), ErrorCode.ResourceExhausted, "resume");
    const resumeRevision = Number(error.details.resumeRevision);
    const lastDelivered = delivered.at(-1)?.value?.revision ?? 0;
    assert.equal(resumeRevision, lastDelivered + 1);

    const resumed = feed
      .watch({ fromRevision: resumeRevision, signal: controller.signal })
      [Symbol.asyncIterator]();
    const rest = await take(resumed, 10);
    assert.deepEqual(
      rest.map((event) => event.revision),
      Array.from({ length: 10 }, (_, i) => resumeRevision + i),
    );
    assert.equal(rest.at(-1)?.node?.lastSeenAt, node.lastSeenAt + 10);
    controller.abort();
  });

  it("resumes from a revision after the controller restarts", async () => {
    const dir = await mkdtemp(join(tmpdir(), "corral-feed-"));
    try {
      const path = join(dir, "store.db");
      const clock = new ManualClock();
      let lastSeen = 0;
      {
        await using store = await SqliteStore.open({ path });
        const registry = new NodeRegistry(store, clock);
        await registry.register({ name: "one" });
        await registry.register({ name: "two" });
        const controller = new AbortController();
        const [event] = await take(
          new EventFeed(store).watch({ fromRevision: 1, signal: controller.signal })[Symbol.asyncIterator](),
          1,
        );
        controller.abort();
        lastSeen = event?.revision ?? 0;
        await registry.register({ name: "three" });
      }
      await using store = await SqliteStore.open({ path });
      await new NodeRegistry(store, clock).register({ name: "four" });
      const controller = new AbortController();
      const events = await take(
        new EventFeed(store)
          .watch({ fromRevision: lastSeen + 1, signal: controller.signal })
          [Symbol.asyncIterator](),
        3,
      );
      controller.abort();
      assert.deepEqual(events.map(brief), ["2 node.put two", "3 node.put three", "4 node.put four"]);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});
