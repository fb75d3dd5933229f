import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { EventFeed } from "../../src/core/events/event-feed.ts";
import type { NodeRecord } from "../../src/core/nodes/node.ts";
import type { DirectoryChange } from "../../src/core/ownership/ownership.ts";
import { ownershipKeyOf, ownershipMemberKeyOf } from "../../src/core/ownership/ownership-keys.ts";
import { OwnershipFollower } from "../../src/engines/ownership-follower.ts";
import { type CoreFixture, makeCore, rejectsWith } from "../core/core-fixture.ts";

interface Fixture extends AsyncDisposable {
  core: CoreFixture;
  ownership: OwnershipFollower;
  feed: EventFeed;
  nodes: NodeRecord[];
}

/** A store with `count` ready nodes at 10.0.0.i:7444 (node-0 … ), and a started directory over it. */
async function cluster(count: number): Promise<Fixture> {
  const core = await makeCore();
  const nodes: NodeRecord[] = [];
  for (let i = 0; i < count; i++) {
    nodes.push(
      await core.registry.register({
        id: `node-${i}`,
        name: `agent-${i}`,
        address: `10.0.0.${i + 1}`,
        port: 7444,
        status: "ready",
      }),
    );
  }
  const feed = new EventFeed(core.store);
  const ownership = new OwnershipFollower({
    store: core.store,
    registry: core.registry,
    feed,
    clock: core.clock,
  });
  await ownership.start();
  return {
    core,
    ownership,
    feed,
    nodes,
    async [Symbol.asyncDispose]() {
      await ownership.close();
      await core[Symbol.asyncDispose]();
    },
  };
}

const host = (i: number) => `10.0.0.${i + 1}:7444`;

/** Waits (bounded) until `check` holds for the directory, which follows the feed asynchronously. */
async function until(check: () => boolean, what: string, timeoutMs = 5_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!check()) {
    if (Date.now() > deadline) assert.fail(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}

describe("OwnershipFollower (directory over the store)", () => {
  it("places registered keys over ready members and lists each member's keys", async () => {
    await using f = await cluster(3);
    const keys = Array.from({ length: 300 }, (_, i) => `cart-${i}`);
    const { owners, added } = await f.ownership.registerKeys(keys);
    assert.equal(added, 300);
    assert.equal(owners.length, 300);
    const perMember = f.nodes.map((n) => f.ownership.directory.keysOf(n.id));
    assert.equal(
      perMember.reduce((sum, list) => sum + list.length, 0),
      300,
    );
    for (const list of perMember) assert.ok(list.length > 50, `a fair share each: ${list.length}`);
    assert.equal(
      (await f.ownership.registerKeys(keys.slice(0, 10))).added,
      0,
      "registering again adds nothing",
    );
    await rejectsWith(f.ownership.registerKeys([""]), "INVALID_ARGUMENT", "keys[0]");
    await rejectsWith(f.ownership.registerKeys(["x".repeat(2_000)]), "INVALID_ARGUMENT", "limit");
  });

  it("moves a dead member's keys once it is down, and releases its claims", async () => {
    await using f = await cluster(3);
    await f.ownership.registerKeys(Array.from({ length: 200 }, (_, i) => `k${i}`));
    await f.ownership.claim("pinned", host(1));
    const before = f.ownership.directory.owners();
    const victim = f.nodes[1] as NodeRecord;
    await f.core.registry.setStatus(victim.id, "suspect");
    await until(() => f.ownership.directory.member(victim.id)?.status === "suspect", "suspect");
    await f.core.registry.setStatus(victim.id, "down");
    await until(() => f.ownership.directory.claimOf("pinned") === undefined, "the claim released");
    const after = f.ownership.directory.owners();
    for (const [key, owner] of before) {
      assert.notEqual(after.get(key), victim.id, `${key} still with the dead member`);
      if (owner !== victim.id) assert.equal(after.get(key), owner, `${key} moved though its owner lives`);
    }
    // Back up: the hashing gives it its share again, but the released claim stays released.
    await f.core.registry.setStatus(victim.id, "ready");
    await until(() => f.ownership.directory.keyCountOf(victim.id) > 0, "keys back");
    assert.equal(f.ownership.directory.claimOf("pinned"), undefined);
    assert.equal(f.ownership.owner("pinned").reason, "rendezvous");
  });

  it("answers ConfirmOwner: accepted for the rendezvous owner and the owner's hand-over, refused otherwise", async () => {
    await using f = await cluster(3);
    const key = "cart-42";
    await f.ownership.registerKeys([key]);
    const owner = f.ownership.owner(key).owner;
    assert.ok(owner !== undefined);
    const others = f.nodes.filter((n) => n.id !== owner.id);
    const [other, third] = others as [NodeRecord, NodeRecord];
    const otherHost = `${other.address}:${other.port}`;

    const stranger = await f.ownership.confirmOwner(key, otherHost, { nodeId: third.id, isNode: true });
    assert.equal(stranger.accepted, false);
    assert.match(stranger.message, /only its owner may hand it/);

    const revision = await f.core.store.revision();
    const handed = await f.ownership.confirmOwner(key, otherHost, { nodeId: owner.id, isNode: true });
    assert.deepEqual(handed.accepted, true, handed.message);
    assert.match(handed.message, /handed over by its owner/);
    assert.equal(f.ownership.owner(key).owner?.id, other.id);
    assert.equal(f.ownership.owner(key).reason, "claim");
    const changes = await f.core.store.changes(revision + 1, { prefix: ownershipKeyOf(key) });
    assert.equal(changes.length, 1, "the accepted transfer is one event");

    // The rendezvous owner takes it back: the claim is dropped.
    const back = await f.ownership.confirmOwner(key, owner.host, {});
    assert.equal(back.accepted, true, back.message);
    assert.match(back.message, /rendezvous owner/);
    assert.equal(f.ownership.owner(key).reason, "rendezvous");

    assert.equal(
      (await f.ownership.confirmOwner(key, owner.host, {})).message,
      `${key} already belongs to ${owner.host} (${owner.name})`,
    );
    assert.match((await f.ownership.confirmOwner(key, "10.9.9.9:1", {})).message, /not a member/);
    assert.match((await f.ownership.confirmOwner("", owner.host, {})).message, /cart_id is empty/);
    await f.core.registry.setStatus(other.id, "down");
    await until(() => f.ownership.directory.member(other.id)?.status === "down", "down");
    const toDown = await f.ownership.confirmOwner(key, otherHost, { nodeId: owner.id });
    assert.deepEqual([toDown.accepted, /is down, not ready/.test(toDown.message)], [false, true]);
  });

  it("Closing drains the host: its keys move before the answer, and it is undrained when it comes back", async () => {
    await using f = await cluster(3);
    await f.ownership.registerKeys(Array.from({ length: 300 }, (_, i) => `c${i}`));
    const closingNode = f.nodes[2] as NodeRecord;
    const had = f.ownership.directory.keyCountOf(closingNode.id);
    assert.ok(had > 0);
    const ack = await f.ownership.closing(host(2), { nodeId: closingNode.id, isNode: true });
    assert.equal(ack.accepted, true);
    assert.equal(ack.message, `${host(2)} (agent-2) is draining: ${had} keys moved`);
    assert.equal(f.ownership.directory.keyCountOf(closingNode.id), 0, "moved before the answer");
    assert.equal(f.ownership.directory.member(closingNode.id)?.draining?.reason, "closing");
    await rejectsWith(f.ownership.claim("c1", host(2)), "FAILED_PRECONDITION", "draining");
    const again = await f.ownership.closing(host(2));
    assert.equal(again.message, `${host(2)} (agent-2) is draining: 0 keys moved`);
    assert.equal((await f.ownership.closing("10.1.1.1:1")).accepted, false);
    await rejectsWith(
      f.ownership.closing(host(1), { nodeId: closingNode.id, isNode: true }),
      "PERMISSION_DENIED",
    );

    // The process exits, is marked down, and comes back: a closing drain ends there.
    await f.core.registry.setStatus(closingNode.id, "down");
    await f.core.registry.setStatus(closingNode.id, "ready");
    await until(() => f.ownership.directory.member(closingNode.id)?.draining === undefined, "undrained");
    await until(() => f.ownership.directory.keyCountOf(closingNode.id) > 0, "keys back");
    assert.equal(await f.core.store.get(ownershipMemberKeyOf(closingNode.id)), undefined);
  });

  it("keeps an operator's drain until it is undone, and counts keys moved both ways", async () => {
    await using f = await cluster(4);
    await f.ownership.registerKeys(Array.from({ length: 400 }, (_, i) => `d${i}`));
    const target = f.nodes[0] as NodeRecord;
    const had = f.ownership.directory.keyCountOf(target.id);
    const drained = await f.ownership.drain("agent-0", true, "operator");
    assert.equal(drained.moved, had);
    await f.core.registry.setStatus(target.id, "down");
    await f.core.registry.setStatus(target.id, "ready");
    await until(() => f.ownership.directory.member(target.id)?.status === "ready", "ready");
    assert.equal(f.ownership.directory.member(target.id)?.draining?.reason, "operator");
    const undone = await f.ownership.drain(target.id, false, "operator");
    assert.equal(undone.moved, had, "the same keys come back");
    await rejectsWith(f.ownership.drain("nobody", true, "operator"), "NOT_FOUND");
  });

  it("claims override hashing until released; a node claims and releases only its own", async () => {
    await using f = await cluster(3);
    const [a, b] = f.nodes as [NodeRecord, NodeRecord];
    const key = "actor-7";
    const claimed = await f.ownership.claim(key, host(1), { nodeId: b.id, isNode: true });
    assert.equal(claimed.owner.id, b.id);
    assert.equal(f.ownership.owner(key).reason, "claim");
    await rejectsWith(f.ownership.claim(key, host(0), { nodeId: b.id, isNode: true }), "PERMISSION_DENIED");
    await rejectsWith(f.ownership.release(key, false, { nodeId: a.id, isNode: true }), "PERMISSION_DENIED");
    const released = await f.ownership.release(key, false, { nodeId: b.id, isNode: true });
    assert.equal(released.wasClaimed, true);
    assert.equal(f.ownership.owner(key).reason, "rendezvous");
    assert.equal(f.ownership.directory.has(key), true);
    await f.ownership.release(key, true);
    assert.equal(f.ownership.directory.has(key), false);
  });

  it("weights move keys toward heavier members", async () => {
    await using f = await cluster(2);
    await f.ownership.registerKeys(Array.from({ length: 4_000 }, (_, i) => `w${i}`));
    const heavy = f.nodes[0] as NodeRecord;
    const { moved } = await f.ownership.setWeight(heavy.id, 3);
    assert.ok(moved > 800 && moved < 1_200, `${moved} moved (expected about a quarter)`);
    const share = f.ownership.directory.keyCountOf(heavy.id) / 4_000;
    assert.ok(Math.abs(share - 0.75) < 0.03, `share ${share}`);
    await rejectsWith(f.ownership.setWeight(heavy.id, -1), "INVALID_ARGUMENT");
    const reset = await f.ownership.setWeight(heavy.id, undefined);
    assert.equal(reset.moved, moved);
  });

  it("watches members and claims: the listing, then changes; resumable by revision", async () => {
    await using f = await cluster(2);
    await f.ownership.claim("x", host(0));
    const stop = new AbortController();
    const seen: DirectoryChange[] = [];
    const iterator = f.ownership.watch({ includeClaims: true, signal: stop.signal })[Symbol.asyncIterator]();
    const next = async () => {
      const item = await iterator.next();
      assert.equal(item.done, false);
      seen.push(item.value as DirectoryChange);
      return item.value as DirectoryChange;
    };
    assert.deepEqual(
      [await next(), await next(), await next(), await next()].map((c) => c.type),
      ["snapshot", "snapshot", "snapshot-claim", "synced"],
    );
    const drainRevision = (await f.core.store.revision()) + 1;
    await f.ownership.drain(host(1), true, "operator");
    const put = await next();
    assert.equal(put.type, "put");
    assert.equal(put.type === "put" && put.member.draining?.reason, "operator");
    await f.ownership.release("x", false);
    const released = await next();
    assert.equal(released.type, "released");
    assert.equal(released.type === "released" && released.claim.host, host(0));
    await f.core.registry.remove(f.nodes[1]?.id ?? "");
    const deleted = await next();
    assert.equal(deleted.type, "deleted");
    stop.abort();

    const resumed = new AbortController();
    const replay: string[] = [];
    for await (const change of f.ownership.watch({
      fromRevision: drainRevision,
      includeClaims: true,
      signal: resumed.signal,
    })) {
      replay.push(change.type);
      if (replay.length === 3) break;
    }
    resumed.abort();
    assert.deepEqual(replay, ["put", "released", "deleted"]);
  });

  it("a second directory over the same store agrees (what a controller replica would see)", async () => {
    await using f = await cluster(3);
    await f.ownership.registerKeys(Array.from({ length: 100 }, (_, i) => `r${i}`));
    await f.ownership.claim("r1", host(2));
    await f.ownership.drain(host(0), true, "operator");
    const replica = new OwnershipFollower({
      store: f.core.store,
      registry: f.core.registry,
      feed: f.feed,
      clock: f.core.clock,
    });
    try {
      await replica.start();
      assert.deepEqual(replica.directory.owners(), f.ownership.directory.owners());
      assert.equal(replica.directory.member("node-0")?.draining?.reason, "operator");
    } finally {
      await replica.close();
    }
  });
  it("a claim held by a member that died while no follower ran is released when one starts", async () => {
    await using f = await cluster(2);
    await f.ownership.claim("orphan", host(1));
    await f.ownership.close();
    // Nobody follows the store now: the holder goes down unnoticed.
    await f.core.registry.setStatus("node-1", "down");
    const next = new OwnershipFollower({
      store: f.core.store,
      registry: f.core.registry,
      feed: f.feed,
      clock: f.core.clock,
    });
    try {
      await next.start();
      await until(() => next.directory.claimOf("orphan") === undefined, "the orphan claim released");
      assert.equal(next.owner("orphan").owner?.id, "node-0");
    } finally {
      await next.close();
    }
  });

  it("after close it follows the store no more, and its callers stop waiting", async () => {
    await using f = await cluster(2);
    const revision = f.ownership.revision;
    await f.ownership.close();
    await f.core.registry.setStatus("node-1", "suspect");
    assert.equal(f.ownership.revision, revision, "a closed follower applies nothing");
    assert.equal(f.ownership.directory.member("node-1")?.status, "ready");
    assert.equal(f.core.store.activeWatchers(), 0, "its store watch is closed");
  });
});
