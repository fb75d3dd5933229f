import assert from "node:assert/strict";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import BetterSqlite3 from "better-sqlite3";
import { CorralError, ErrorCode } from "../../src/base/errors.ts";
import { SqliteStore } from "../../src/store/sqlite/sqlite-store.ts";
import type { StoreEvent } from "../../src/store/types.ts";

describe("SqliteStore", () => {
  let dir = "";
  let counter = 0;
  const freshPath = () => join(dir, `db-${++counter}.sqlite`);
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), "corral-sqlite-"));
  });
  after(() => rm(dir, { recursive: true, force: true }));

  it("starts at revision 0 and gives the first write revision 1", async () => {
    await using store = await SqliteStore.open({ path: ":memory:" });
    assert.equal(await store.revision(), 0);
    const result = await store.commit({ ops: [{ type: "put", key: "/a", value: "1" }] });
    assert.deepEqual(result, { succeeded: true, revision: 1 });
  });

  it("puts a file database in WAL mode", async () => {
    const path = freshPath();
    await (await SqliteStore.open({ path })).close();
    const db = new BetterSqlite3(path, { readonly: true });
    try {
      assert.equal(db.pragma("journal_mode", { simple: true }), "wal");
    } finally {
      db.close();
    }
  });

  it("keeps only the last N revisions of history, compacting every M", async () => {
    await using store = await SqliteStore.open({ path: ":memory:", retainRevisions: 10, compactEvery: 5 });
    for (let i = 1; i <= 23; i++) await store.commit({ ops: [{ type: "put", key: "/k", value: String(i) }] });
    // The last compaction ran at revision 20 and kept 11..20 and everything after.
    await assert.rejects(store.changes(10), (error: unknown) => {
      assert.ok(error instanceof CorralError);
      assert.equal(error.code, ErrorCode.OutOfRange);
      assert.equal(error.details.oldestRevision, "11");
      return true;
    });
    const kept = await store.changes(11);
    assert.deepEqual(
      kept.map((event) => event.revision),
      Array.from({ length: 13 }, (_, i) => 11 + i),
    );
    assert.equal((await store.get("/k"))?.value, "23");
  });

  it("replays long history in pages and then goes live", async () => {
    await using store = await SqliteStore.open({ path: ":memory:" });
    for (let txn = 0; txn < 25; txn++) {
      await store.commit({
        ops: Array.from({ length: 100 }, (_, i) => ({
          type: "put" as const,
          key: `/bulk/${txn}/${i}`,
          value: "v",
        })),
      });
    }
    const controller = new AbortController();
    const seen: StoreEvent[] = [];
    let batches = 0;
    for await (const batch of store.watch(1, { signal: controller.signal })) {
      batches++;
      seen.push(...batch);
      if (seen.length === 2_500) await store.commit({ ops: [{ type: "put", key: "/live", value: "v" }] });
      if (seen.length > 2_500 || batches > 100) break;
    }
    assert.equal(seen.length, 2_501);
    assert.ok(batches >= 3 && batches <= 5, `history came in ${batches} batches`);
    assert.equal(seen.at(-1)?.key, "/live");
    assert.equal(seen.at(-1)?.revision, 26);
  });

  it("shares one revision between two connections to one file", async () => {
    const path = freshPath();
    await using first = await SqliteStore.open({ path });
    await using second = await SqliteStore.open({ path });
    await first.commit({ ops: [{ type: "put", key: "/a", value: "1" }] });
    const result = await second.commit({ ops: [{ type: "put", key: "/b", value: "1" }] });
    assert.equal(result.revision, 2);
    assert.equal(await first.revision(), 2);
    assert.equal((await first.get("/b"))?.createRevision, 2);
  });
});
