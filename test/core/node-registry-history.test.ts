import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { ErrorCode } from "../../src/base/errors.ts";
import { makeCore, rejectsWith } from "./core-fixture.ts";

describe("NodeRegistry: the nodes as stored, and what changed since a revision", () => {
  it("stored() shows last-seen as written, not the in-memory heartbeat time reads show", async () => {
    await using core = await makeCore();
    const node = await core.registry.register({ id: "n-1", name: "one" });
    core.registry.takeLastSeenFrom(() => node.lastSeenAt + 60_000);
    const { nodes, revision } = await core.registry.stored();
    assert.deepEqual(
      nodes.map((n) => [n.id, n.lastSeenAt]),
      [["n-1", node.lastSeenAt]],
    );
    assert.equal(revision, await core.store.revision());
    assert.equal((await core.registry.get("n-1")).lastSeenAt, node.lastSeenAt + 60_000);
  });

  it("changedSince() gives the latest state of each node changed after the revision, removals without a record", async () => {
    await using core = await makeCore();
    await core.registry.register({ id: "n-1", name: "one" });
    const { revision: before } = await core.registry.stored();
    await core.registry.register({ id: "n-2", name: "two" });
    await core.registry.setStatus("n-2", "ready");
    await core.registry.remove("n-1");
    const changed = await core.registry.changedSince(before);
    assert.ok(changed !== undefined);
    assert.equal(changed.revision, await core.store.revision());
    assert.deepEqual(
      changed.changes.map((c) => [c.id, c.node?.status]),
      [
        ["n-2", "ready"],
        ["n-1", undefined],
      ],
    );
    assert.deepEqual((await core.registry.changedSince(changed.revision))?.changes, []);
  });

  it("changedSince() refuses a revision ahead of the store, naming both", async () => {
    await using core = await makeCore();
    await core.registry.register({ id: "n-1", name: "one" });
    const now = await core.store.revision();
    await rejectsWith(core.registry.changedSince(now + 5), ErrorCode.InvalidArgument, `${now + 5}`, `${now}`);
  });
});
