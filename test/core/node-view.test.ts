import assert from "node:assert/strict";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import fc from "fast-check";
import { ManualClock } from "../../src/base/clock.ts";
import { pause } from "../../src/base/pause.ts";
import type { MetadataValue, NodeService, NodeStatus } from "../../src/core/nodes/node.ts";
import type { NodeFilter } from "../../src/core/nodes/node-filter.ts";
import { NodeRegistry } from "../../src/core/nodes/node-registry.ts";
import { NodeView } from "../../src/core/nodes/node-view.ts";
import { EtcdStore } from "../../src/store/etcd/etcd-store.ts";
import { SqliteStore } from "../../src/store/sqlite/sqlite-store.ts";
import type { Store } from "../../src/store/store.ts";
import { eventually } from "../helpers/agent.ts";
import { etcdMissing, startTestEtcd, type TestEtcd } from "../helpers/etcd.ts";

/** Counts the reads that reach the store, so a test can say that a read did not. */
function counting(store: Store): { store: Store; reads: () => number } {
  let reads = 0;
  const wrapped: Store = {
    get: (key) => {
      reads++;
      return store.get(key);
    },
    list: (prefix, options) => {
      reads++;
      return store.list(prefix, options);
    },
    commit: (txn) => store.commit(txn),
    revision: () => store.revision(),
    changes: (from, options) => store.changes(from, options),
    watch: (from, options) => store.watch(from, options),
    compact: (before) => store.compact(before),
    activeWatchers: () => store.activeWatchers(),
    close: () => store.close(),
    [Symbol.asyncDispose]: () => store.close(),
  };
  return { store: wrapped, reads: () => reads };
}

const racks = ["r1", "r2", "r7"];
const names = ["a", "b", "c", "d", "e"];
const statuses: NodeStatus[] = ["pending", "ready", "suspect", "down", "left"];
const services: NodeService[] = ["LOGGING", "PIPELINES", "HUB_SERVER"];

type Step =
  | { op: "register"; name: string; rack: string; services: NodeService[] }
  | { op: "status"; pick: number; status: NodeStatus; direct: boolean }
  | { op: "metadata"; pick: number; rack: string; direct: boolean }
  | { op: "rename"; pick: number; name: string }
  | { op: "remove"; pick: number; direct: boolean };

const step: fc.Arbitrary<Step> = fc.oneof(
  fc.record({
    op: fc.constant("register" as const),
    name: fc.constantFrom(...names),
    rack: fc.constantFrom(...racks),
    services: fc.subarray(services),
  }),
  fc.record({
    op: fc.constant("status" as const),
    pick: fc.nat(),
    status: fc.constantFrom(...statuses),
    direct: fc.boolean(),
  }),
  fc.record({
    op: fc.constant("metadata" as const),
    pick: fc.nat(),
    rack: fc.constantFrom(...racks),
    direct: fc.boolean(),
  }),
  fc.record({ op: fc.constant("rename" as const), pick: fc.nat(), name: fc.constantFrom(...names) }),
  fc.record({ op: fc.constant("remove" as const), pick: fc.nat(), direct: fc.boolean() }),
);

const filters: NodeFilter[] = [
  {},
  { metadata: { rack: { kind: "string", value: "r7" } } },
  { metadata: { rack: { kind: "string", value: "r1" } }, statuses: ["ready", "suspect"] },
  { services: ["LOGGING", "PIPELINES"] },
  { statuses: ["left"] },
  { metadata: { rack: { kind: "int", value: 7n } } },
  { nameContains: "A" },
];

/**
 * Runs `steps` through a registry backed by the view and, for the steps marked `direct`, through a second
 * registry without it (a writer the view hears of only through the store's watch). Every read through
 * the view must then answer what a plain scan of the store answers.
 */
async function check(store: Store, steps: Step[]): Promise<void> {
  const clock = new ManualClock();
  const view = await NodeView.start(store, { pause });
  try {
    const viewed = new NodeRegistry(store, clock, { view });
    const plain = new NodeRegistry(store, clock);
    const ids: string[] = [];
    for (const s of steps) {
      clock.advance(1);
      const id = ids.length === 0 ? undefined : ids[("pick" in s ? s.pick : 0) % ids.length];
      const writer = "direct" in s && s.direct ? plain : viewed;
      const rack: MetadataValue = { kind: "string", value: "rack" in s ? s.rack : "" };
      // Refusals (a name taken, a node gone) are part of the sequence: they must change nothing.
      await (async () => {
        if (s.op === "register") {
          const node = await viewed.register({ name: s.name, metadata: { rack }, services: s.services });
          ids.push(node.id);
          // Read your writes: the writer's own read sees the node at once.
          assert.equal((await viewed.get(node.id)).name, s.name);
        } else if (id === undefined) return;
        else if (s.op === "status") await writer.setStatus(id, s.status);
        else if (s.op === "metadata") await writer.update(id, { metadata: { rack } });
        else if (s.op === "rename") {
          await viewed.update(id, { name: s.name });
          assert.equal((await viewed.get(id)).name, s.name);
        } else {
          await writer.remove(id);
          if (writer === viewed) await assert.rejects(viewed.get(id));
        }
      })().catch((error: unknown) => {
        if (!(error instanceof Error) || !("code" in error)) throw error;
      });
    }
    const revision = await store.revision();
    await eventually(async () => (view.revision >= revision ? true : undefined), 5_000, "view caught up");
    assert.ok(view.ready);
    for (const filter of filters)
      assert.deepEqual(
        (await viewed.list(filter)).nodes,
        (await plain.list(filter)).nodes,
        JSON.stringify(filter, (_, v) => (typeof v === "bigint" ? `${v}n` : v)),
      );
    for (const idOrName of [...ids, ...names, "nobody"]) {
      const a = await viewed.get(idOrName).catch((error: Error) => error.message);
      const b = await plain.get(idOrName).catch((error: Error) => error.message);
      assert.deepEqual(a, b, idOrName);
    }
  } finally {
    await view.close();
  }
}

describe("NodeView: reads from memory", () => {
  it("answers every read like a plain scan of the store after any sequence of writes (SQLite in memory)", async () => {
    await fc.assert(
      fc.asyncProperty(fc.array(step, { maxLength: 40 }), async (steps) => {
        await using store = await SqliteStore.open({ path: ":memory:" });
        await check(store, steps);
      }),
      { numRuns: 60 },
    );
  });

  it("does the same over a SQLite file", async () => {
    const dir = await mkdtemp(join(tmpdir(), "corral-node-view-"));
    try {
      let run = 0;
      await fc.assert(
        fc.asyncProperty(fc.array(step, { maxLength: 40 }), async (steps) => {
          await using store = await SqliteStore.open({ path: join(dir, `store-${run++}.db`) });
          await check(store, steps);
        }),
        { numRuns: 15 },
      );
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it("serves get and list without reading the store once loaded", async () => {
    await using sqlite = await SqliteStore.open({ path: ":memory:" });
    const { store, reads } = counting(sqlite);
    const view = await NodeView.start(store, { pause });
    try {
      const registry = new NodeRegistry(store, new ManualClock(), { view });
      for (let i = 0; i < 20; i++)
        await registry.register({
          name: `n${i}`,
          metadata: { rack: { kind: "string", value: `r${i % 4}` } },
        });
      const before = reads();
      const listed = await registry.list({ metadata: { rack: { kind: "string", value: "r3" } } });
      assert.deepEqual(
        listed.nodes.map((n) => n.name),
        ["n11", "n15", "n19", "n3", "n7"],
      );
      assert.equal((await registry.get("n7")).name, "n7");
      assert.equal(reads(), before, "a read went to the store");
    } finally {
      await view.close();
    }
  });

  it("hands out records that cannot be edited by accident", async () => {
    await using store = await SqliteStore.open({ path: ":memory:" });
    const view = await NodeView.start(store, { pause });
    try {
      const registry = new NodeRegistry(store, new ManualClock(), { view });
      await registry.register({ name: "n1", labels: { a: "1" } });
      const node = await registry.get("n1");
      assert.throws(() => {
        (node.labels as Record<string, string>).a = "2";
      }, TypeError);
      assert.equal((await registry.get("n1")).labels.a, "1");
    } finally {
      await view.close();
    }
  });
});

describe("NodeView on etcd: two controllers", { skip: etcdMissing() }, () => {
  let etcd: TestEtcd;
  let here: EtcdStore;
  let elsewhere: EtcdStore;

  before(async () => {
    etcd = await startTestEtcd();
    here = await EtcdStore.open({ endpoints: [etcd.endpoint], prefix: "/nv" });
    elsewhere = await EtcdStore.open({ endpoints: [etcd.endpoint], prefix: "/nv" });
  });
  after(async () => {
    await here?.close();
    await elsewhere?.close();
    await etcd?.stop();
  });

  it("a write is seen at once by its own controller, and by the other once its watch delivers it", async () => {
    const clock = new ManualClock();
    const hereView = await NodeView.start(here, { pause });
    const elsewhereView = await NodeView.start(elsewhere, { pause });
    try {
      const a = new NodeRegistry(here, clock, { view: hereView });
      const b = new NodeRegistry(elsewhere, clock, { view: elsewhereView });
      const node = await a.register({ name: "edge-1", metadata: { rack: { kind: "string", value: "r7" } } });
      assert.equal((await a.get("edge-1")).id, node.id);
      await a.setStatus(node.id, "ready");
      assert.equal((await a.get(node.id)).status, "ready");
      await eventually(
        async () => ((await b.get("edge-1").catch(() => undefined))?.status === "ready" ? true : undefined),
        5_000,
        "the other controller sees the node",
      );
      // The other controller writes from what its view holds; the compare-and-swap holds.
      await b.update("edge-1", { metadata: { rack: { kind: "string", value: "r1" } } });
      await eventually(
        async () => {
          const { nodes } = await a.list({ metadata: { rack: { kind: "string", value: "r1" } } });
          return nodes.length === 1 ? true : undefined;
        },
        5_000,
        "the first controller sees the change",
      );
      assert.equal((await a.list({ metadata: { rack: { kind: "string", value: "r7" } } })).nodes.length, 0);
      // A write from a stale view is retried from the store, not lost.
      await a.update("edge-1", { labels: { zone: "z" } });
      const seen = await a.get("edge-1");
      assert.equal(seen.labels.zone, "z");
      assert.equal(seen.metadata.rack?.kind === "string" && seen.metadata.rack.value, "r1");
      await a.remove("edge-1");
      await assert.rejects(a.get("edge-1"));
      await eventually(
        async () => ((await b.get("edge-1").catch(() => "gone")) === "gone" ? true : undefined),
        5_000,
        "removed on the other controller",
      );
    } finally {
      await hereView.close();
      await elsewhereView.close();
    }
  });

  it("the property holds on etcd too", async () => {
    let run = 0;
    await fc.assert(
      fc.asyncProperty(fc.array(step, { maxLength: 25 }), async (steps) => {
        const store = await EtcdStore.open({ endpoints: [etcd.endpoint], prefix: `/prop-${run++}` });
        try {
          await check(store, steps);
        } finally {
          await store.close();
        }
      }),
      { numRuns: 8 },
    );
  });
});
