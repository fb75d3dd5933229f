import { randomBytes } from "node:crypto";
import type { Clock } from "../../base/clock.ts";
import type { Store } from "../../store/store.ts";

export interface AuditEntry {
  at: number;
  /** Who: `node:<id>`, `admin:<name>`, `local`, `anonymous`. */
  principal: string;
  /** What: the gRPC method path. */
  method: string;
  /** The result: `OK` or the error code. */
  result: string;
  /** The error message when it failed; the object acted on when the handler said. */
  detail?: string;
  /** The caller's address. */
  peer?: string;
}

const auditPrefix = "/audit/";

/**
 * The most characters an entry keeps of each field. An error message may repeat a caller's argument of
 * megabytes; the store refuses values over 1 MiB, so an entry carrying it whole would be lost. 4 096
 * characters (at most 12 KiB as UTF-8) say what happened; the rest is counted, not kept.
 */
export const auditFieldLimits = { detail: 4096, principal: 512, method: 512, result: 64, peer: 256 } as const;

/** `text` cut to `max` characters, saying how many were left out; a surrogate pair is not split. */
export function truncateField(text: string, max: number): string {
  if (text.length <= max) return text;
  let cut = text.slice(0, max);
  const last = cut.charCodeAt(cut.length - 1);
  if (last >= 0xd800 && last <= 0xdbff) cut = cut.slice(0, -1);
  return `${cut}… (${text.length - cut.length} more characters)`;
}

/**
 * Who changed what, when, and how it ended: one entry per state-changing call, kept in the store so every
 * controller sees the same log, and pruned to a bounded length.
 */
export class AuditLog {
  readonly #store: Store;
  readonly #clock: Clock;
  readonly #keep: number;

  constructor(store: Store, clock: Clock, keep = 10_000) {
    this.#store = store;
    this.#clock = clock;
    this.#keep = keep;
  }

  async append(entry: Omit<AuditEntry, "at">): Promise<void> {
    const at = this.#clock.now();
    const key = `${auditPrefix}${String(at).padStart(15, "0")}-${randomBytes(4).toString("hex")}`;
    const bounded: Omit<AuditEntry, "at"> = {
      principal: truncateField(entry.principal, auditFieldLimits.principal),
      method: truncateField(entry.method, auditFieldLimits.method),
      result: truncateField(entry.result, auditFieldLimits.result),
      ...(entry.detail === undefined ? {} : { detail: truncateField(entry.detail, auditFieldLimits.detail) }),
      ...(entry.peer === undefined ? {} : { peer: truncateField(entry.peer, auditFieldLimits.peer) }),
    };
    await this.#store.commit({ ops: [{ type: "put", key, value: JSON.stringify({ at, ...bounded }) }] });
  }

  /** The newest entries, newest first. */
  async recent(limit = 100): Promise<AuditEntry[]> {
    const { items } = await this.#store.list(auditPrefix);
    return items
      .slice(-limit)
      .reverse()
      .map((kv) => JSON.parse(kv.value) as AuditEntry);
  }

  /** Keeps the newest `keep` entries. */
  async prune(): Promise<number> {
    const { items } = await this.#store.list(auditPrefix);
    const excess = items.slice(0, Math.max(0, items.length - this.#keep));
    for (let i = 0; i < excess.length; i += 100) {
      await this.#store.commit({
        ops: excess.slice(i, i + 100).map((kv) => ({ type: "delete" as const, key: kv.key })),
      });
    }
    return excess.length;
  }
}
