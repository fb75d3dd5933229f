import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { ErrorCode } from "../../src/base/errors.ts";
import { makeCore, rejectsWith } from "./core-fixture.ts";

describe("NodeRegistry.setStatuses", () => {
  it("writes many status changes as one revision, skipping nodes gone, left or not in `from`", async () => {
    await using core = await makeCore();
    const [a, b, c, d] = await Promise.all(
      ["a", "b", "c", "d"].map((name) => core.registry.register({ name, status: "ready" })),
    );
    assert.ok(a && b && c && d);
    await core.registry.setStatus(c.id, "left");
    await core.registry.setStatus(d.id, "suspect");
    const before = await core.store.revision();
    const result = await core.registry.setStatuses([
      { id: a.id, status: "suspect" },
      { id: b.id, status: "suspect", from: "ready" },
      { id: c.id, status: "suspect" },
      { id: d.id, status: "down", from: "ready" },
      { id: "no-such-node", status: "down" },
    ]);
    assert.equal(result.revision, before + 1, "one txn");
    assert.deepEqual(result.written.map((n) => n.name).sort(), ["a", "b"]);
    assert.deepEqual(result.skipped.sort(), [c.id, d.id, "no-such-node"].sort());
    assert.equal((await core.registry.get("a")).status, "suspect");
    assert.equal((await core.registry.get("d")).status, "suspect", "not in `from`: untouched");
    assert.equal((await core.registry.get(c.id)).status, "left");
    await rejectsWith(
      core.registry.setStatuses([{ id: a.id, status: "left" }]),
      ErrorCode.InvalidArgument,
      "left",
    );
    assert.equal(await core.store.revision(), before + 1, "a refusal changes nothing");
  });
});
