import { prefixEnd } from "../txn-validation.ts";
import type { KeyValue, StoreEvent } from "../types.ts";
import type { EventRow, KvRow, Statements } from "./statements.ts";

export function rowToKeyValue(row: KvRow): KeyValue {
  return {
    key: row.key,
    value: row.value,
    createRevision: row.create_revision,
    modRevision: row.mod_revision,
    version: row.version,
  };
}

export function rowToEvent(row: EventRow): StoreEvent {
  const event: StoreEvent = { revision: row.revision, type: row.type, key: row.key };
  if (row.value !== null) event.value = row.value;
  if (row.prev_value !== null) event.prevValue = row.prev_value;
  return event;
}

export function readMeta(statements: Statements, name: "revision" | "compact_revision"): number {
  return statements.getMeta.get(name)?.value ?? 0;
}

/** Events from `from` on under `prefix`, whole revisions only (see ChangesOptions.limit). */
export function readEvents(
  statements: Statements,
  from: number,
  prefix: string,
  limit?: number,
): StoreEvent[] {
  const range = { from, start: prefix, end: prefixEnd(prefix) };
  if (limit === undefined) return statements.eventsFrom.all(range).map(rowToEvent);
  const last = statements.nthEventRevision.get({ ...range, offset: limit - 1 });
  const rows =
    last === undefined
      ? statements.eventsFrom.all(range)
      : statements.eventsBetween.all({ ...range, to: last.revision });
  return rows.map(rowToEvent);
}
