import { CorralError, ErrorCode } from "../../base/errors.ts";
import type { Store } from "../../store/store.ts";
import type { Compare, Op } from "../../store/types.ts";
import { withoutClaim } from "./ownership.ts";
import {
  decodeKeyEntry,
  decodeMemberState,
  encodeKeyEntry,
  encodeMemberState,
  ownershipKeyOf,
  ownershipMemberKeyOf,
  type StoredKeyEntry,
  type StoredMemberState,
} from "./ownership-keys.ts";

/**
 * The ownership directory's writes: each a compare-and-swap on the store (so it is an event, and several
 * controllers over one store never overwrite each other), retried a bounded number of times when the
 * entry changed under it. Each answers the revision it wrote (0: nothing to write).
 */
export class OwnershipWrites {
  readonly #store: Store;
  readonly #maxAttempts: number;

  constructor(store: Store, maxAttempts: number) {
    this.#store = store;
    this.#maxAttempts = maxAttempts;
  }

  /** Makes keys known (no claim); answers how many were new and the last revision written. */
  async registerKeys(keys: readonly string[]): Promise<{ added: number; revision: number }> {
    let added = 0;
    let revision = 0;
    const value = encodeKeyEntry({});
    for (const batch of chunks(keys, maxTxnOps)) {
      const result = await this.#store.commit({
        compares: batch.map((key) => ({ key: ownershipKeyOf(key), modRevision: 0 })),
        ops: batch.map((key) => ({ type: "put", key: ownershipKeyOf(key), value })),
      });
      if (result.succeeded) {
        added += batch.length;
        revision = result.revision;
        continue;
      }
      // Someone registered one of them meanwhile: one at a time, keeping what is there.
      for (const key of batch) {
        const one = await this.#store.commit({
          compares: [{ key: ownershipKeyOf(key), modRevision: 0 }],
          ops: [{ type: "put", key: ownershipKeyOf(key), value }],
        });
        if (one.succeeded) {
          added++;
          revision = one.revision;
        }
      }
    }
    return { added, revision };
  }

  /** Read-modify-write of one key's entry: `change` answers the new entry, null to delete. */
  async key(
    key: string,
    change: (current: StoredKeyEntry | undefined) => StoredKeyEntry | null,
  ): Promise<number> {
    const storeKey = ownershipKeyOf(key);
    for (let attempt = 1; attempt <= this.#maxAttempts; attempt++) {
      const kv = await this.#store.get(storeKey);
      const next = change(kv === undefined ? undefined : decodeKeyEntry(kv.value));
      if (next === null && kv === undefined) return 0;
      const compares: Compare[] = [{ key: storeKey, modRevision: kv?.modRevision ?? 0 }];
      const ops: Op[] =
        next === null
          ? [{ type: "delete", key: storeKey }]
          : [{ type: "put", key: storeKey, value: encodeKeyEntry(next) }];
      const result = await this.#store.commit({ compares, ops });
      if (result.succeeded) return result.revision;
    }
    throw contention(`key "${key}"`, this.#maxAttempts);
  }

  /** Read-modify-write of a member's drain and weight; an empty state is deleted. */
  async memberState(
    nodeId: string,
    change: (current: StoredMemberState) => StoredMemberState | "same",
  ): Promise<number> {
    const storeKey = ownershipMemberKeyOf(nodeId);
    for (let attempt = 1; attempt <= this.#maxAttempts; attempt++) {
      const kv = await this.#store.get(storeKey);
      const next = change(kv === undefined ? {} : decodeMemberState(kv.value));
      if (next === "same") return 0;
      const empty = next.drain === undefined && next.weight === undefined;
      if (empty && kv === undefined) return 0;
      const result = await this.#store.commit({
        compares: [{ key: storeKey, modRevision: kv?.modRevision ?? 0 }],
        ops: empty
          ? [{ type: "delete", key: storeKey }]
          : [{ type: "put", key: storeKey, value: encodeMemberState(next) }],
      });
      if (result.succeeded) return result.revision;
    }
    throw contention(`member ${nodeId}`, this.#maxAttempts);
  }

  async deleteMemberState(nodeId: string): Promise<number> {
    const result = await this.#store.commit({ ops: [{ type: "delete", key: ownershipMemberKeyOf(nodeId) }] });
    return result.revision;
  }

  /** Drops the claims `nodeId` holds on `keys`, up to 128 per txn; answers the last revision written. */
  async releaseClaims(nodeId: string, keys: readonly string[]): Promise<number> {
    let revision = 0;
    for (const batch of chunks(keys, maxTxnOps)) {
      const kvs = await Promise.all(
        batch.map(async (key) => ({ key, kv: await this.#store.get(ownershipKeyOf(key)) })),
      );
      const held = kvs.filter(({ kv }) => kv !== undefined && decodeKeyEntry(kv.value).claim === nodeId);
      if (held.length === 0) continue;
      const result = await this.#store.commit({
        compares: held.map(({ key, kv }) => ({
          key: ownershipKeyOf(key),
          modRevision: kv?.modRevision ?? 0,
        })),
        ops: held.map(({ key, kv }) => ({
          type: "put",
          key: ownershipKeyOf(key),
          value: encodeKeyEntry(withoutClaim(decodeKeyEntry(kv?.value ?? "{}"))),
        })),
      });
      if (result.succeeded) revision = result.revision;
      else {
        // Something changed under us: release one key at a time.
        for (const { key } of held) {
          revision = Math.max(
            revision,
            await this.key(key, (current) =>
              current?.claim === nodeId ? withoutClaim(current) : (current ?? null),
            ),
          );
        }
      }
    }
    return revision;
  }
}

const maxTxnOps = 128;

function chunks<T>(items: readonly T[], size: number): T[][] {
  const out: T[][] = [];
  for (let i = 0; i < items.length; i += size) out.push(items.slice(i, i + size));
  return out;
}

function contention(what: string, attempts: number): CorralError {
  return new CorralError(
    ErrorCode.Aborted,
    `${what} kept changing during ${attempts} attempts to write it; try again`,
  );
}
