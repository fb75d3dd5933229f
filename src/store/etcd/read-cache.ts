import { setTimeout as sleep } from "node:timers/promises";
import type { Logger } from "../../observability/logger.ts";
import type { Store } from "../store.ts";
import type { KeyValue, Op, Txn } from "../types.ts";
import type { EtcdStore } from "./etcd-store.ts";

export interface ReadCacheOptions {
  readonly store: EtcdStore;
  /** Key prefixes mirrored in memory; `get` of any other key goes to etcd. */
  readonly prefixes: readonly string[];
  readonly logger: Logger;
  /** How often etcd is checked to be reachable (a mirror that may be cut off is not used); default 1 s. */
  readonly checkEveryMs?: number;
}

interface Mirror {
  readonly prefix: string;
  items: Map<string, KeyValue>;
  /** The last revision the mirror has taken in. */
  applied: number;
  /** The latest revision this controller wrote under the prefix: until applied, reads go to etcd. */
  awaiting: number;
  synced: boolean;
  stop: AbortController;
}

/**
 * Point reads of a few hot prefixes served from memory: every authenticated call looks up the caller's
 * node and the revocation list, and with etcd that would be two etcd reads per heartbeat. Each prefix is
 * listed once and then followed by a watch; a read goes to etcd instead whenever the mirror cannot vouch
 * for being current: before it is loaded, while it reloads, while etcd does not answer the periodic
 * check (fail closed: a partitioned controller does not keep trusting what it last saw), and until a
 * write this controller made under the prefix has come back through the watch (read your own writes).
 * Changes made through another controller arrive within the watch delay (milliseconds).
 */
export class ReadCache {
  readonly #o: ReadCacheOptions;
  readonly #mirrors: Mirror[];
  readonly #stopCommits: () => void;
  readonly #checker: NodeJS.Timeout;
  #healthy = true;
  #closed = false;
  readonly #loops: Promise<void>[] = [];

  constructor(options: ReadCacheOptions) {
    this.#o = options;
    this.#mirrors = options.prefixes.map((prefix) => ({
      prefix,
      items: new Map(),
      applied: 0,
      awaiting: 0,
      synced: false,
      stop: new AbortController(),
    }));
    this.#stopCommits = options.store.onCommitted((txn, revision) => this.#wrote(txn, revision));
    for (const mirror of this.#mirrors) this.#loops.push(this.#follow(mirror));
    this.#checker = setInterval(() => void this.#check(), options.checkEveryMs ?? 1_000);
    this.#checker.unref();
  }

  /** Whether every mirror is loaded and current (for tests and status). */
  get synced(): boolean {
    return this.#healthy && this.#mirrors.every((m) => m.synced);
  }

  /** The store, with `get` of mirrored keys served from memory when the mirror is current. */
  view(): Store {
    const store = this.#o.store;
    return {
      get: async (key) => {
        const mirror = this.#mirrors.find((m) => key.startsWith(m.prefix));
        if (mirror === undefined || !this.#current(mirror)) return store.get(key);
        return mirror.items.get(key);
      },
      list: (prefix, options) => store.list(prefix, options),
      commit: (txn) => store.commit(txn),
      revision: () => store.revision(),
      changes: (from, options) => store.changes(from, options),
      watch: (from, options) => store.watch(from, options),
      compact: (before) => store.compact(before),
      activeWatchers: () => store.activeWatchers(),
      close: async () => undefined,
      [Symbol.asyncDispose]: async () => undefined,
    };
  }

  #current(mirror: Mirror): boolean {
    return this.#healthy && mirror.synced && mirror.applied >= mirror.awaiting;
  }

  #wrote(txn: Txn, revision: number): void {
    for (const mirror of this.#mirrors)
      if (txn.ops.some((op) => touches(op, mirror.prefix)))
        mirror.awaiting = Math.max(mirror.awaiting, revision);
  }

  async #follow(mirror: Mirror): Promise<void> {
    let failures = 0;
    while (!this.#closed) {
      const signal = mirror.stop.signal;
      try {
        const { items, revision } = await this.#o.store.list(mirror.prefix);
        mirror.items = new Map(items.map((kv) => [kv.key, kv]));
        mirror.applied = revision;
        mirror.synced = true;
        failures = 0;
        for await (const batch of this.#o.store.watch(revision + 1, { prefix: mirror.prefix, signal })) {
          for (const event of batch) {
            if (event.type === "delete") mirror.items.delete(event.key);
            else {
              const previous = mirror.items.get(event.key);
              mirror.items.set(event.key, {
                key: event.key,
                value: event.value ?? "",
                modRevision: event.revision,
                createRevision: previous?.createRevision ?? event.revision,
                version: (previous?.version ?? 0) + 1,
              });
            }
          }
          mirror.applied = Math.max(mirror.applied, batch.at(-1)?.revision ?? mirror.applied);
        }
      } catch (error) {
        if (!this.#closed)
          this.#o.logger.debug(
            { err: (error as Error).message, prefix: mirror.prefix },
            "read cache reloads",
          );
      }
      mirror.synced = false;
      if (this.#closed) return;
      if (mirror.stop.signal.aborted) mirror.stop = new AbortController();
      failures++;
      await sleep(Math.min(2_000, 100 * failures)).catch(() => undefined);
    }
  }

  async #check(): Promise<void> {
    try {
      await this.#o.store.revision();
      if (!this.#healthy) {
        // Back from an outage: what the watches missed is reloaded before the mirrors are trusted again.
        for (const mirror of this.#mirrors) {
          mirror.synced = false;
          mirror.stop.abort();
        }
        this.#healthy = true;
      }
    } catch {
      this.#healthy = false;
    }
  }

  async close(): Promise<void> {
    this.#closed = true;
    clearInterval(this.#checker);
    this.#stopCommits();
    for (const mirror of this.#mirrors) mirror.stop.abort();
    await Promise.all(this.#loops);
  }
}

function touches(op: Op, prefix: string): boolean {
  if (op.type === "deletePrefix") return op.prefix.startsWith(prefix) || prefix.startsWith(op.prefix);
  return op.key.startsWith(prefix);
}
