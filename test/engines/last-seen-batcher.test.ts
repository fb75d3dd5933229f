import assert from "node:assert/strict";
import { describe, it } from "node:test";
import {
  type HeardNodes,
  LastSeenBatcher,
  type LastSeenChannel,
} from "../../src/engines/last-seen-batcher.ts";
import { silentLogger } from "./engine-fixture.ts";

/** The controller registry's part, in memory: what was published, and a way to deliver others' batches. */
function fakeChannel(options: { refuse?: () => boolean } = {}) {
  const published: Record<string, number>[] = [];
  let deliver: ((batch: { seen: Record<string, number> }) => void) | undefined;
  let followers = 0;
  const channel: LastSeenChannel = {
    async publishLastSeen(seen) {
      if (options.refuse?.()) return false;
      published.push({ ...seen });
      return true;
    },
    followLastSeen(onBatch) {
      followers++;
      deliver = onBatch;
      return {
        close() {
          followers--;
          deliver = undefined;
        },
      };
    },
  };
  return {
    channel,
    published,
    followers: () => followers,
    deliver: (seen: Record<string, number>) => deliver?.({ seen }),
  };
}

/** Membership's part: heartbeats heard here, and times other controllers heard. */
function fakeMembership() {
  let heard: Record<string, number> = {};
  const remote: [string, number][] = [];
  const membership: HeardNodes = {
    takeHeard() {
      const taken = heard;
      heard = {};
      return taken;
    },
    async observeRemote(nodeId, at) {
      remote.push([nodeId, at]);
    },
  };
  return { membership, remote, hear: (nodeId: string, at: number) => (heard[nodeId] = at) };
}

/** Lets the flush the interval started run to its end (it awaits the channel's promise). */
const settle = () => new Promise((resolve) => setImmediate(resolve));

describe("LastSeenBatcher (constructed directly, the interval driven by mock.timers)", () => {
  it("publishes what was heard as one batch a period, and nothing when nothing was heard", async (t) => {
    t.mock.timers.enable({ apis: ["setInterval"] });
    const { channel, published } = fakeChannel();
    const m = fakeMembership();
    const batcher = new LastSeenBatcher({
      registry: channel,
      membership: m.membership,
      everyMs: 1_000,
      logger: silentLogger,
    });
    m.hear("a", 100);
    m.hear("b", 200);
    m.hear("a", 150);
    t.mock.timers.tick(999);
    await settle();
    assert.deepEqual(published, [], "nothing before the period ends");
    t.mock.timers.tick(1);
    await settle();
    assert.deepEqual(published, [{ a: 150, b: 200 }], "one write carries every node heard");
    t.mock.timers.tick(3_000);
    await settle();
    assert.equal(published.length, 1, "a quiet period writes nothing");
    assert.deepEqual(batcher.stats, { batches: 1, entries: 2 });
    await batcher.close();
  });

  it("keeps a batch it could not write and merges it into the next (newest time wins)", async (t) => {
    t.mock.timers.enable({ apis: ["setInterval"] });
    let leased = false;
    const { channel, published } = fakeChannel({ refuse: () => !leased });
    const m = fakeMembership();
    const batcher = new LastSeenBatcher({
      registry: channel,
      membership: m.membership,
      everyMs: 1_000,
      logger: silentLogger,
    });
    m.hear("a", 100);
    t.mock.timers.tick(1_000);
    await settle();
    assert.deepEqual(published, [], "no lease yet: nothing written");
    leased = true;
    m.hear("a", 300);
    m.hear("c", 50);
    t.mock.timers.tick(1_000);
    await settle();
    assert.deepEqual(published, [{ a: 300, c: 50 }]);
    await batcher.close();
  });

  it("applies the batches other controllers publish, and on close writes what is left and stops following", async () => {
    const { channel, published, followers, deliver } = fakeChannel();
    const m = fakeMembership();
    const batcher = new LastSeenBatcher({
      registry: channel,
      membership: m.membership,
      everyMs: 60_000,
      logger: silentLogger,
    });
    assert.equal(followers(), 1);
    deliver({ x: 10, y: 20 });
    await settle();
    assert.deepEqual(m.remote, [
      ["x", 10],
      ["y", 20],
    ]);
    m.hear("a", 5);
    await batcher.close();
    assert.deepEqual(published, [{ a: 5 }], "a handover loses nothing heard");
    assert.equal(followers(), 0);
  });
});
