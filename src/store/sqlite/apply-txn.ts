import { prefixEnd } from "../txn-validation.ts";
import type { StoreEvent, Txn } from "../types.ts";
import { readMeta } from "./history.ts";
import type { Statements } from "./statements.ts";

export interface Retention {
  /** Revisions of history to keep. */
  keep: number;
  /** Compact when the revision is a multiple of this, so the delete runs rarely and in bulk. */
  every: number;
}

export interface Applied {
  succeeded: boolean;
  revision: number;
  events: StoreEvent[];
}

/** Runs inside an IMMEDIATE transaction: checks compares, applies ops under one revision, logs events. */
export function applyTxn(statements: Statements, txn: Txn, retention: Retention): Applied {
  const current = readMeta(statements, "revision");
  for (const compare of txn.compares ?? []) {
    const actual = statements.getKv.get(compare.key)?.mod_revision ?? 0;
    if (actual !== compare.modRevision) return { succeeded: false, revision: current, events: [] };
  }
  const revision = current + 1;
  const events: StoreEvent[] = [];
  for (const op of txn.ops) {
    if (op.type === "put") {
      const prev = statements.getKv.get(op.key);
      const params = { key: op.key, value: op.value, revision };
      if (prev === undefined) statements.insertKv.run(params);
      else statements.updateKv.run(params);
      events.push({
        revision,
        type: "put",
        key: op.key,
        value: op.value,
        ...(prev === undefined ? {} : { prevValue: prev.value }),
      });
    } else if (op.type === "delete") {
      const prev = statements.getKv.get(op.key);
      if (prev === undefined) continue;
      statements.deleteKv.run(op.key);
      events.push({ revision, type: "delete", key: op.key, prevValue: prev.value });
    } else {
      const range = { start: op.prefix, end: prefixEnd(op.prefix) };
      const rows = statements.rangeKv.all(range);
      if (rows.length === 0) continue;
      statements.deleteRangeKv.run(range);
      for (const row of rows) events.push({ revision, type: "delete", key: row.key, prevValue: row.value });
    }
  }
  if (events.length === 0) return { succeeded: true, revision: current, events };
  events.forEach((event, seq) => {
    statements.insertEvent.run({
      revision,
      seq,
      type: event.type,
      key: event.key,
      value: event.value ?? null,
      prev_value: event.prevValue ?? null,
    });
  });
  statements.setMeta.run(revision, "revision");
  if (revision % retention.every === 0 && revision > retention.keep)
    compactHistory(statements, revision - retention.keep + 1);
  return { succeeded: true, revision, events };
}

/** Drops events older than `before`; never moves the compaction point backwards. */
export function compactHistory(statements: Statements, before: number): void {
  if (before <= readMeta(statements, "compact_revision")) return;
  statements.deleteEventsBefore.run(before);
  statements.setMeta.run(before, "compact_revision");
}
