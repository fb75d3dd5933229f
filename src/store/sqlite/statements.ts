import type { Database } from "better-sqlite3";

export interface KvRow {
  key: string;
  value: string;
  create_revision: number;
  mod_revision: number;
  version: number;
}

export interface EventRow {
  revision: number;
  type: "put" | "delete";
  key: string;
  value: string | null;
  prev_value: string | null;
}

const kvColumns = "key, value, create_revision, mod_revision, version";
const eventColumns = "revision, type, key, value, prev_value";
// Every range is [start, end) over the key's bytes; `after` excludes keys up to a list cursor.
const inRange = "key >= @start AND key < @end";

/** Prepared once per connection; better-sqlite3 statements are cheap to reuse and costly to re-parse. */
export function prepareStatements(db: Database) {
  return {
    getKv: db.prepare<[string], KvRow>(`SELECT ${kvColumns} FROM kv WHERE key = ?`),
    listKv: db.prepare<[{ start: string; end: string; after: string; limit: number }], KvRow>(
      `SELECT ${kvColumns} FROM kv WHERE ${inRange} AND key > @after ORDER BY key LIMIT @limit`,
    ),
    insertKv: db.prepare<[{ key: string; value: string; revision: number }]>(
      "INSERT INTO kv (key, value, create_revision, mod_revision, version) VALUES (@key, @value, @revision, @revision, 1)",
    ),
    updateKv: db.prepare<[{ key: string; value: string; revision: number }]>(
      "UPDATE kv SET value = @value, mod_revision = @revision, version = version + 1 WHERE key = @key",
    ),
    deleteKv: db.prepare<[string]>("DELETE FROM kv WHERE key = ?"),
    rangeKv: db.prepare<[{ start: string; end: string }], Pick<KvRow, "key" | "value">>(
      `SELECT key, value FROM kv WHERE ${inRange} ORDER BY key`,
    ),
    deleteRangeKv: db.prepare<[{ start: string; end: string }]>(`DELETE FROM kv WHERE ${inRange}`),
    insertEvent: db.prepare<
      [
        {
          revision: number;
          seq: number;
          type: string;
          key: string;
          value: string | null;
          prev_value: string | null;
        },
      ]
    >(
      "INSERT INTO events (revision, seq, type, key, value, prev_value) VALUES (@revision, @seq, @type, @key, @value, @prev_value)",
    ),
    eventsFrom: db.prepare<[{ from: number; start: string; end: string }], EventRow>(
      `SELECT ${eventColumns} FROM events WHERE revision >= @from AND ${inRange} ORDER BY revision, seq`,
    ),
    eventsBetween: db.prepare<[{ from: number; to: number; start: string; end: string }], EventRow>(
      `SELECT ${eventColumns} FROM events WHERE revision BETWEEN @from AND @to AND ${inRange} ORDER BY revision, seq`,
    ),
    /** The revision of the n-th matching event (OFFSET n-1), where a page of n events would end. */
    nthEventRevision: db.prepare<
      [{ from: number; start: string; end: string; offset: number }],
      { revision: number }
    >(
      `SELECT revision FROM events WHERE revision >= @from AND ${inRange} ORDER BY revision, seq LIMIT 1 OFFSET @offset`,
    ),
    deleteEventsBefore: db.prepare<[number]>("DELETE FROM events WHERE revision < ?"),
    getMeta: db.prepare<[string], { value: number }>("SELECT value FROM meta WHERE name = ?"),
    setMeta: db.prepare<[number, string]>("UPDATE meta SET value = ? WHERE name = ?"),
  };
}

export type Statements = ReturnType<typeof prepareStatements>;
