import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { ErrorCode } from "../../src/base/errors.ts";
import type { RegisterNodeInput } from "../../src/core/nodes/node-registry.ts";
import { makeCore, rejectsWith } from "./core-fixture.ts";

const uuid = /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/;

describe("NodeRegistry: register", () => {
  it("fills in an id, defaults and the clock's time", async () => {
    await using core = await makeCore();
    const node = await core.registry.register({ name: "agent-1", address: "127.0.0.1:10432" });
    assert.match(node.id, uuid);
    assert.equal(node.status, "pending");
    assert.equal(node.role, "agent");
    assert.deepEqual([node.address, node.port], ["127.0.0.1", 10432]);
    assert.equal(node.createdAt, core.clock.now());
    assert.equal(node.lastSeenAt, core.clock.now());
    assert.deepEqual(await core.registry.get(node.id), node);
  });

  it("keeps a given id and refuses it a second time with ALREADY_EXISTS", async () => {
    await using core = await makeCore();
    await core.registry.register({ id: "n-1", name: "first" });
    await rejectsWith(core.registry.register({ id: "n-1", name: "second" }), ErrorCode.AlreadyExists, "n-1");
    assert.equal((await core.registry.get("n-1")).name, "first");
  });

  const big = "x".repeat(4097);
  const cases: [string, Record<string, unknown>, string][] = [
    ["empty name", { name: "" }, "name"],
    ["129-character name", { name: "n".repeat(129) }, "name"],
    ["name with outer spaces", { name: " agent " }, "name"],
    ["name with a newline", { name: "a\nb" }, "name"],
    ["id with a space", { id: "a b", name: "ok" }, "id"],
    [
      "too-long metadata key",
      { name: "ok", metadata: { ["k".repeat(129)]: { kind: "bool", value: true } } },
      "metadata key",
    ],
    [
      "65 metadata keys",
      {
        name: "ok",
        metadata: Object.fromEntries(
          Array.from({ length: 65 }, (_, i) => [`k${i}`, { kind: "bool", value: true }]),
        ),
      },
      "metadata",
    ],
    [
      "oversized string value",
      { name: "ok", metadata: { note: { kind: "string", value: big } } },
      "metadata.note",
    ],
    [
      "oversized bytes value",
      { name: "ok", metadata: { blob: { kind: "bytes", value: new Uint8Array(4097) } } },
      "metadata.blob",
    ],
    ["int beyond int64", { name: "ok", metadata: { n: { kind: "int", value: 2n ** 63n } } }, "metadata.n"],
    ["negative uint", { name: "ok", metadata: { u: { kind: "uint", value: -1n } } }, "metadata.u"],
    ["int given as a number", { name: "ok", metadata: { n: { kind: "int", value: 1 } } }, "metadata.n"],
    [
      "unknown metadata kind",
      { name: "ok", metadata: { x: { kind: "decimal", value: "1" } } },
      "metadata.x.kind",
    ],
    ["address that is no host", { name: "ok", address: "not a host:80" }, "address"],
    ["address without a port", { name: "ok", address: "10.0.0.1" }, "address"],
    ["port out of range", { name: "ok", address: "10.0.0.1", port: 70000 }, "port"],
    ["unknown service", { name: "ok", services: ["HUB_SERVER", "NOPE"] }, "services[1]"],
    ["negative cpu count", { name: "ok", resources: { cpuCores: -1 } }, "resources.cpuCores"],
    ["fractional memory", { name: "ok", resources: { memoryMb: 1.5 } }, "resources.memoryMb"],
    ["label value too long", { name: "ok", labels: { zone: "z".repeat(257) } }, "labels.zone"],
    ["unknown status", { name: "ok", status: "zombie" }, "status"],
    ["unknown role", { name: "ok", role: "boss" }, "role"],
  ];
  for (const [what, input, field] of cases) {
    it(`refuses ${what} with INVALID_ARGUMENT naming ${field}`, async () => {
      await using core = await makeCore();
      const error = await rejectsWith(
        core.registry.register(input as unknown as RegisterNodeInput),
        ErrorCode.InvalidArgument,
        field,
      );
      assert.ok(error.message.startsWith(field), error.message);
      assert.equal((await core.store.list("/")).items.length, 0, "nothing may be written");
    });
  }

  it("keeps names unique among nodes that have not left", async () => {
    await using core = await makeCore();
    const first = await core.registry.register({ name: "agent-1" });
    await rejectsWith(
      core.registry.register({ name: "agent-1" }),
      ErrorCode.AlreadyExists,
      "agent-1",
      first.id,
    );
    await core.registry.setStatus(first.id, "left");
    const second = await core.registry.register({ name: "agent-1" });
    assert.equal((await core.registry.get("agent-1")).id, second.id);
    assert.equal((await core.registry.get(first.id)).status, "left");
    // Coming back would take the name from the new holder, so it is refused.
    await rejectsWith(core.registry.setStatus(first.id, "ready"), ErrorCode.AlreadyExists, "agent-1");
  });

  it("gives a contested name to exactly one of many concurrent registrations", async () => {
    await using core = await makeCore();
    const results = await Promise.allSettled(
      Array.from({ length: 10 }, () => core.registry.register({ name: "contested" })),
    );
    assert.equal(results.filter((result) => result.status === "fulfilled").length, 1);
    assert.equal((await core.registry.list()).nodes.length, 1);
  });
});

describe("NodeRegistry: addressing", () => {
  it("finds a node by id or by name, the id first", async () => {
    await using core = await makeCore();
    const alpha = await core.registry.register({ id: "alpha", name: "first" });
    const named = await core.registry.register({ id: "n-2", name: "alpha" });
    assert.equal((await core.registry.get("alpha")).id, alpha.id);
    assert.equal((await core.registry.get("first")).id, alpha.id);
    assert.equal((await core.registry.get("n-2")).id, named.id);
  });

  it("says NOT_FOUND naming what was looked up, and INVALID_ARGUMENT for nothing", async () => {
    await using core = await makeCore();
    await rejectsWith(core.registry.get("agent-9"), ErrorCode.NotFound, '"agent-9"');
    await rejectsWith(core.registry.get(""), ErrorCode.InvalidArgument, "node");
    await rejectsWith(core.registry.get("\uD800"), ErrorCode.NotFound);
  });

  it("finds a node that left by its name while that is unambiguous", async () => {
    await using core = await makeCore();
    const gone = await core.registry.register({ name: "old" });
    await core.registry.setStatus(gone.id, "left");
    assert.equal((await core.registry.get("old")).id, gone.id);
    const again = await core.registry.register({ name: "old", status: "left" });
    await rejectsWith(core.registry.get("old"), ErrorCode.FailedPrecondition, "2 nodes");
    assert.equal((await core.registry.get(again.id)).id, again.id);
  });
});

describe("NodeRegistry: list", () => {
  it("filters by status, metadata of the same kind, bytes, services, labels and name", async () => {
    await using core = await makeCore();
    const { registry } = core;
    await registry.register({
      name: "Edge-A",
      status: "ready",
      services: ["PIPELINES", "LOGGING"],
      labels: { zone: "eu" },
      metadata: { rack: { kind: "int", value: 4n }, key: { kind: "bytes", value: new Uint8Array([1, 2]) } },
    });
    await registry.register({
      name: "edge-b",
      status: "pending",
      services: ["LOGGING"],
      labels: { zone: "us" },
      metadata: { rack: { kind: "uint", value: 4n }, key: { kind: "bytes", value: new Uint8Array([1, 3]) } },
    });
    await registry.register({ name: "core", status: "ready" });
    const names = async (filter: Parameters<typeof registry.list>[0]) =>
      (await registry.list(filter)).nodes.map((node) => node.name);

    assert.deepEqual(await names({}), ["Edge-A", "core", "edge-b"]);
    assert.deepEqual(await names({ statuses: ["ready"] }), ["Edge-A", "core"]);
    assert.deepEqual(await names({ statuses: [] }), ["Edge-A", "core", "edge-b"]);
    assert.deepEqual(await names({ metadata: { rack: { kind: "int", value: 4n } } }), ["Edge-A"]);
    assert.deepEqual(await names({ metadata: { rack: { kind: "uint", value: 4n } } }), ["edge-b"]);
    assert.deepEqual(await names({ metadata: { rack: { kind: "string", value: "4" } } }), []);
    assert.deepEqual(await names({ metadata: { key: { kind: "bytes", value: new Uint8Array([1, 3]) } } }), [
      "edge-b",
    ]);
    assert.deepEqual(await names({ services: ["LOGGING"] }), ["Edge-A", "edge-b"]);
    assert.deepEqual(await names({ services: ["LOGGING", "PIPELINES"] }), ["Edge-A"]);
    assert.deepEqual(await names({ labels: { zone: "us" } }), ["edge-b"]);
    assert.deepEqual(await names({ nameContains: "EDGE" }), ["Edge-A", "edge-b"]);
    assert.deepEqual(await names({ nameContains: "edge", statuses: ["ready"] }), ["Edge-A"]);
    assert.equal((await registry.list()).revision, await core.store.revision());
  });

  it("refuses a malformed filter instead of matching nothing", async () => {
    await using core = await makeCore();
    await rejectsWith(
      core.registry.list({ statuses: ["sleepy" as never] }),
      ErrorCode.InvalidArgument,
      "filter.statuses[0]",
    );
    await rejectsWith(
      core.registry.list({ metadata: { n: { kind: "int", value: 1 as never } } }),
      ErrorCode.InvalidArgument,
      "filter.metadata.n",
    );
  });
});

describe("NodeRegistry: update", () => {
  it("renames, moving the name so the old one is free and the new one finds the node", async () => {
    await using core = await makeCore();
    const node = await core.registry.register({ name: "before", address: "h1:1000" });
    core.clock.advance(5_000);
    const renamed = await core.registry.update("before", { name: "after", address: "h2" });
    assert.equal(renamed.name, "after");
    assert.deepEqual([renamed.address, renamed.port], ["h2", 1000]);
    assert.equal(renamed.updatedAt, node.createdAt + 5_000);
    assert.equal((await core.registry.get("after")).id, node.id);
    await rejectsWith(core.registry.get("before"), ErrorCode.NotFound);
    await core.registry.register({ name: "before" });
  });

  it("refuses a rename onto a taken name and changes nothing", async () => {
    await using core = await makeCore();
    const a = await core.registry.register({ name: "a" });
    await core.registry.register({ name: "b" });
    await rejectsWith(
      core.registry.update(a.id, { name: "b", labels: { x: "1" } }),
      ErrorCode.AlreadyExists,
      '"b"',
    );
    assert.deepEqual(await core.registry.get(a.id), a);
  });

  it("replaces metadata and labels whole and validates the patch", async () => {
    await using core = await makeCore();
    const node = await core.registry.register({ name: "m", metadata: { a: { kind: "bool", value: true } } });
    const updated = await core.registry.update(node.id, { metadata: { b: { kind: "float", value: 0.1 } } });
    assert.deepEqual(updated.metadata, { b: { kind: "float", value: Math.fround(0.1) } });
    await rejectsWith(
      core.registry.update(node.id, { services: ["FTP" as never] }),
      ErrorCode.InvalidArgument,
      "services[0]",
    );
  });

  it("loses no change under concurrent read-modify-write updates", async () => {
    await using core = await makeCore();
    const node = await core.registry.register({ name: "busy" });
    await Promise.all(
      Array.from({ length: 12 }, (_, i) =>
        core.registry.update("busy", (current) => ({ labels: { ...current.labels, [`l${i}`]: String(i) } })),
      ),
    );
    const final = await core.registry.get(node.id);
    assert.equal(Object.keys(final.labels).length, 12);
    assert.equal((await core.store.get(`/nodes/${node.id}`))?.version, 13);
  });

  it("gives up with ABORTED after its attempts, keeping every change that got through", async () => {
    await using core = await makeCore({ maxAttempts: 2 });
    const node = await core.registry.register({ name: "hot" });
    const results = await Promise.allSettled(
      Array.from({ length: 6 }, (_, i) =>
        core.registry.update(node.id, (current) => ({ labels: { ...current.labels, [`l${i}`]: "1" } })),
      ),
    );
    const failed = results.filter((result) => result.status === "rejected");
    assert.ok(failed.length > 0, "six writers with two attempts each cannot all get through");
    for (const failure of failed) {
      assert.equal(failure.reason?.code, ErrorCode.Aborted);
      assert.match(failure.reason?.message, /2 attempts/);
    }
    const final = await core.registry.get(node.id);
    assert.equal(Object.keys(final.labels).length, results.length - failed.length);
  });

  it("sets status and last-seen time, and removes by name", async () => {
    await using core = await makeCore();
    const node = await core.registry.register({ name: "agent-3" });
    core.clock.advance(1_000);
    assert.equal((await core.registry.setStatus("agent-3", "ready")).status, "ready");
    core.clock.advance(1_000);
    const touched = await core.registry.touch(node.id);
    assert.equal(touched.lastSeenAt, node.lastSeenAt + 2_000);
    await rejectsWith(
      core.registry.setStatus(node.id, "asleep" as never),
      ErrorCode.InvalidArgument,
      "status",
    );
    const removed = await core.registry.remove("agent-3");
    assert.equal(removed.id, node.id);
    await rejectsWith(core.registry.get(node.id), ErrorCode.NotFound);
    await rejectsWith(core.registry.touch(node.id), ErrorCode.NotFound);
    assert.deepEqual((await core.store.list("/")).items, []);
  });

  it("writes every change through the store's event history", async () => {
    await using core = await makeCore();
    const node = await core.registry.register({ name: "tracked" });
    await core.registry.setStatus(node.id, "ready");
    await core.registry.remove(node.id);
    const events = await core.store.changes(1, { prefix: "/nodes/" });
    assert.deepEqual(
      events.map((event) => [event.revision, event.type]),
      [
        [1, "put"],
        [2, "put"],
        [3, "delete"],
      ],
    );
  });
});
