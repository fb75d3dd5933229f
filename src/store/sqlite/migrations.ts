import type { Database } from "better-sqlite3";
import { CorralError, ErrorCode } from "../../base/errors.ts";

export interface Migration {
  /** 1, 2, 3 … in order, never reused. */
  version: number;
  name: string;
  up(db: Database): void;
}

/** Append only: a released migration is never edited, a new one is added after it. */
export const migrations: readonly Migration[] = [
  {
    version: 1,
    name: "kv, event log, meta",
    up(db) {
      db.exec(`
        CREATE TABLE kv (
          key TEXT PRIMARY KEY,
          value TEXT NOT NULL,
          create_revision INTEGER NOT NULL,
          mod_revision INTEGER NOT NULL,
          version INTEGER NOT NULL
        ) WITHOUT ROWID;
        CREATE TABLE events (
          revision INTEGER NOT NULL,
          seq INTEGER NOT NULL,
          type TEXT NOT NULL CHECK (type IN ('put', 'delete')),
          key TEXT NOT NULL,
          value TEXT,
          prev_value TEXT,
          PRIMARY KEY (revision, seq)
        ) WITHOUT ROWID;
        CREATE TABLE meta (name TEXT PRIMARY KEY, value INTEGER NOT NULL) WITHOUT ROWID;
        INSERT INTO meta (name, value) VALUES ('revision', 0), ('compact_revision', 0);
      `);
    },
  },
];

interface AppliedRow {
  version: number;
  name: string;
}

/**
 * Brings the schema up to the newest migration in one transaction, so a crash leaves the old schema
 * whole. A database written by a newer corral (or another program's table of the same name) is refused
 * rather than guessed at.
 */
export function migrate(db: Database, list: readonly Migration[] = migrations): { from: number; to: number } {
  list.forEach((migration, i) => {
    if (migration.version !== i + 1)
      throw new CorralError(
        ErrorCode.Internal,
        `migration "${migration.name}" has version ${migration.version}, expected ${i + 1}`,
      );
  });
  const latest = list.length;
  const run = db.transaction(() => {
    db.exec(
      "CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at INTEGER NOT NULL)",
    );
    const applied = db
      .prepare<[], AppliedRow>("SELECT version, name FROM schema_migrations ORDER BY version")
      .all();
    const current = applied.at(-1)?.version ?? 0;
    if (current > latest)
      throw new CorralError(
        ErrorCode.FailedPrecondition,
        `database schema is version ${current} but this corral knows versions up to ${latest}; run a newer corral or use another data directory`,
        { details: { schemaVersion: String(current), knownVersion: String(latest) } },
      );
    for (const row of applied) {
      const known = list[row.version - 1];
      if (known === undefined || known.name !== row.name)
        throw new CorralError(
          ErrorCode.FailedPrecondition,
          `database schema migration ${row.version} is "${row.name}", which this corral does not know; the file is not a corral store of this lineage`,
        );
    }
    const insert = db.prepare("INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, ?, ?)");
    for (const migration of list.slice(current)) {
      migration.up(db);
      insert.run(migration.version, migration.name, Date.now());
    }
    return { from: current, to: latest };
  });
  return run.immediate();
}
