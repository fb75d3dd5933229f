import Database from "better-sqlite3";

/**
 * What a controller's SQLite store holds, read from outside the process (read-only, WAL: each read
 * sees the last commit). The audit log is left out (a refused call by a known caller is audited, by
 * design), and so are a node record's liveness fields (heartbeats move them on their own).
 */
export class StoreSnapshots {
  readonly #db: Database.Database;
  readonly #revision: Database.Statement;
  readonly #rows: Database.Statement;
  #last: { revision: number; entries: Map<string, string> } | undefined;

  constructor(path: string) {
    this.#db = new Database(path, { readonly: true, fileMustExist: true });
    this.#revision = this.#db.prepare("SELECT value FROM meta WHERE name = 'revision'");
    this.#rows = this.#db.prepare("SELECT key, value FROM kv WHERE key NOT LIKE '/audit/%'");
  }

  /** The store now; read again only when its revision moved since the last snapshot. */
  take(): Map<string, string> {
    const revision = (this.#revision.get() as { value: number }).value;
    if (this.#last?.revision === revision) return this.#last.entries;
    const entries = new Map<string, string>();
    for (const row of this.#rows.all() as { key: string; value: string }[])
      entries.set(row.key, comparable(row.key, row.value));
    this.#last = { revision, entries };
    return entries;
  }

  close(): void {
    this.#db.close();
  }
}

const liveness = ["status", "lastSeenAt", "updatedAt", "resources"];

function comparable(key: string, value: string): string {
  if (!key.startsWith("/nodes/")) return value;
  const record = JSON.parse(value) as Record<string, unknown>;
  for (const field of liveness) delete record[field];
  return JSON.stringify(record);
}

/** The keys whose value differs between two snapshots (added, removed or changed). */
export function changedKeys(before: Map<string, string>, after: Map<string, string>): string[] {
  if (before === after) return [];
  const changed = new Set<string>();
  for (const [key, value] of before) if (after.get(key) !== value) changed.add(key);
  for (const key of after.keys()) if (!before.has(key)) changed.add(key);
  return [...changed].sort();
}
