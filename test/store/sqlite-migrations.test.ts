import assert from "node:assert/strict";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import BetterSqlite3 from "better-sqlite3";
import { CorralError, ErrorCode } from "../../src/base/errors.ts";
import { type Migration, migrate, migrations } from "../../src/store/sqlite/migrations.ts";
import { SqliteStore } from "../../src/store/sqlite/sqlite-store.ts";

async function rejectsWithCode(promise: Promise<unknown>, code: ErrorCode, pattern: RegExp): Promise<void> {
  await assert.rejects(promise, (error: unknown) => {
    assert.ok(error instanceof CorralError);
    assert.equal(error.code, code);
    assert.match(error.message, pattern);
    return true;
  });
}

function appliedVersions(path: string): { version: number; name: string }[] {
  const db = new BetterSqlite3(path, { readonly: true });
  try {
    return db
      .prepare<[], { version: number; name: string }>("SELECT version, name FROM schema_migrations")
      .all();
  } finally {
    db.close();
  }
}

function tableExists(path: string, table: string): boolean {
  const db = new BetterSqlite3(path, { readonly: true });
  try {
    return (
      db.prepare("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?").get(table) !== undefined
    );
  } finally {
    db.close();
  }
}

describe("SQLite schema migrations", () => {
  let dir = "";
  let counter = 0;
  const freshPath = () => join(dir, `db-${++counter}.sqlite`);
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), "corral-migrations-"));
  });
  after(() => rm(dir, { recursive: true, force: true }));

  it("records every applied migration on a new database", async () => {
    const path = freshPath();
    await (await SqliteStore.open({ path })).close();
    assert.deepEqual(
      appliedVersions(path),
      migrations.map(({ version, name }) => ({ version, name })),
    );
  });

  it("refuses a database whose schema is newer than this code, with FAILED_PRECONDITION", async () => {
    const path = freshPath();
    await (await SqliteStore.open({ path })).close();
    const db = new BetterSqlite3(path);
    db.prepare("INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, ?, ?)").run(
      migrations.length + 1,
      "from the future",
      0,
    );
    db.close();
    await rejectsWithCode(
      SqliteStore.open({ path }),
      ErrorCode.FailedPrecondition,
      new RegExp(`version ${migrations.length + 1}.*up to ${migrations.length}`),
    );
  });

  it("refuses a database whose applied migration has another name", async () => {
    const path = freshPath();
    await (await SqliteStore.open({ path })).close();
    const db = new BetterSqlite3(path);
    db.prepare("UPDATE schema_migrations SET name = 'someone else''s table' WHERE version = 1").run();
    db.close();
    await rejectsWithCode(SqliteStore.open({ path }), ErrorCode.FailedPrecondition, /someone else's table/);
  });

  it("applies a new migration once, keeping the data", async () => {
    const path = freshPath();
    const first = await SqliteStore.open({ path });
    await first.commit({ ops: [{ type: "put", key: "/kept", value: "1" }] });
    await first.close();
    const next: Migration[] = [
      ...migrations,
      {
        version: migrations.length + 1,
        name: "notes",
        up: (db) => db.exec("CREATE TABLE notes (text TEXT)"),
      },
    ];
    // Opening twice proves the second open skips it: CREATE TABLE would fail on a rerun.
    for (let i = 0; i < 2; i++) {
      const store = await SqliteStore.open({ path, migrations: next });
      assert.equal((await store.get("/kept"))?.value, "1");
      assert.equal(await store.revision(), 1);
      await store.close();
    }
    assert.ok(tableExists(path, "notes"));
    assert.equal(appliedVersions(path).length, migrations.length + 1);
  });

  it("rolls a failing migration back whole", async () => {
    const path = freshPath();
    await (await SqliteStore.open({ path })).close();
    const broken: Migration[] = [
      ...migrations,
      {
        version: migrations.length + 1,
        name: "half done",
        up: (db) => {
          db.exec("CREATE TABLE half (x INTEGER)");
          throw new Error("disk says no");
        },
      },
    ];
    await assert.rejects(SqliteStore.open({ path, migrations: broken }), /disk says no/);
    assert.equal(tableExists(path, "half"), false);
    assert.equal(appliedVersions(path).length, migrations.length);
  });

  it("rejects a migration list with a gap in its versions", () => {
    const db = new BetterSqlite3(":memory:");
    try {
      assert.throws(
        () => migrate(db, [{ version: 2, name: "skips one", up: () => {} }]),
        (error: unknown) => error instanceof CorralError && error.code === ErrorCode.Internal,
      );
    } finally {
      db.close();
    }
  });
});
