import { setTimeout as sleep } from "node:timers/promises";
import {
  ClientClosedError,
  type Etcd3,
  GRPCDeadlineExceededError,
  GRPCUnavailableError,
  type IWatchResponse,
} from "etcd3";
import { CorralError, ErrorCode } from "../../base/errors.ts";
import { storeLimits } from "../limits.ts";
import type { Store } from "../store.ts";
import { storeErrors } from "../store-errors.ts";
import {
  validateKey,
  validateLimit,
  validatePrefix,
  validateRevision,
  validateTxn,
} from "../txn-validation.ts";
import type {
  ChangesOptions,
  KeyValue,
  ListOptions,
  ListResult,
  StoreEvent,
  Txn,
  TxnResult,
  WatchOptions,
} from "../types.ts";
import { WatchBuffer } from "../watch-buffer.ts";
import { createEtcdClient, type EtcdTls, neverSent } from "./etcd-client.ts";
import { KeySpace, keyAfter } from "./etcd-keys.ts";
import { openWatchStream, type WatchStream } from "./etcd-watch.ts";

export interface EtcdStoreOptions {
  /** Client URLs, e.g. ["http://127.0.0.1:2379"]. */
  endpoints: string[];
  /**
   * Every key lives under this etcd prefix; default "/corral". Two stores on one cluster must not use
   * prefixes where one starts with the other.
   */
  prefix?: string;
  /** Default for WatchOptions.maxLag; default 10 000 events. */
  watchMaxLag?: number;
  /** Deadline of each unary etcd call; default 10 000 ms. */
  requestTimeoutMs?: number;
  /** How long a live watch keeps trying to reach etcd again before it fails with UNAVAILABLE; default 60 000 ms. */
  watchReconnectMs?: number;
  /** Client TLS (PEM): trust only `ca`, and present `cert`/`key` when etcd asks for a client certificate. */
  tls?: EtcdTls;
}

/**
 * A leader's claim, checked by etcd inside every fenced txn: the election key and the create revision it
 * had when this controller was elected. Once the lease behind it is gone (or another campaign holds the
 * key) the compare fails and the write is not applied.
 */
export interface Fence {
  /** The raw etcd key (not under the store's prefix). */
  readonly key: Buffer;
  readonly createRevision: number;
}

/** Attempts of a read (or of a write that cannot have reached etcd) before UNAVAILABLE is returned. */
const callAttempts = 3;

/** Revisions read per step while a watcher far behind replays history. */
const replayPageSize = 1_000;
/** The whole etcd keyspace: "\0" to "\0". */
const everyKey = { key: Buffer.from([0]), range_end: Buffer.from([0]) };

/**
 * The Store on etcd v3. Its revision is etcd's own cluster revision, so every controller sharing the
 * cluster sees one order of events. Note what follows from that: writes outside `prefix` (another store,
 * leases, other tools) move the revision too, a fresh cluster starts at revision 1, and compact() drops
 * history for the whole cluster, not just this prefix.
 */
export class EtcdStore implements Store {
  readonly #client: Etcd3;
  readonly #endpoints: string[];
  readonly #keys: KeySpace;
  readonly #watchMaxLag: number;
  readonly #watchReconnectMs: number;
  /** Every open watch and how to stop its etcd stream. */
  readonly #watchers = new Map<WatchBuffer, () => void>();
  readonly #committed = new Set<(txn: Txn, revision: number) => void>();
  #closed = false;

  static async open(options: EtcdStoreOptions): Promise<EtcdStore> {
    const store = new EtcdStore(options);
    try {
      await store.revision();
      return store;
    } catch (error) {
      await store.close();
      throw error;
    }
  }

  private constructor(options: EtcdStoreOptions) {
    if (!Array.isArray(options.endpoints) || options.endpoints.length === 0)
      throw CorralError.invalidArgument("endpoints", "must name at least one etcd client URL");
    const prefix = validatePrefix(options.prefix ?? "/corral", "prefix");
    this.#keys = new KeySpace(prefix);
    this.#watchMaxLag = validateLimit(options.watchMaxLag, "watchMaxLag") ?? storeLimits.defaultWatchMaxLag;
    this.#watchReconnectMs = validateLimit(options.watchReconnectMs, "watchReconnectMs") ?? 60_000;
    const requestTimeoutMs = validateLimit(options.requestTimeoutMs, "requestTimeoutMs") ?? 10_000;
    this.#endpoints = [...options.endpoints];
    this.#client = createEtcdClient({
      endpoints: options.endpoints,
      requestTimeoutMs,
      ...(options.tls === undefined ? {} : { tls: options.tls }),
    });
  }

  /** The etcd client, for controller presence and batched liveness, which live beside the store. */
  get client(): Etcd3 {
    return this.#client;
  }

  get prefix(): string {
    return this.#keys.prefix;
  }

  /**
   * This store with every txn fenced by `fence()`: the leader's writes. While `fence()` gives nothing
   * (not leading) a txn fails at once; when etcd finds the claim gone, the txn is not applied, fails
   * with FAILED_PRECONDITION, and `onFenced` hears of it (the controller then stops leading).
   */
  fenced(fence: () => Fence | undefined, onFenced: (error: CorralError) => void = () => undefined): Store {
    const commit = async (txn: Txn): Promise<TxnResult> => {
      const claim = fence();
      if (claim === undefined) throw notLeading("this controller does not lead");
      try {
        return await this.#commit(txn, claim);
      } catch (error) {
        if (error instanceof CorralError && error.details?.fenced === "true") onFenced(error);
        throw error;
      }
    };
    // Private fields do not follow a prototype, so the view delegates method by method.
    return {
      get: (key) => this.get(key),
      list: (prefix, options) => this.list(prefix, options),
      commit,
      revision: () => this.revision(),
      changes: (from, options) => this.changes(from, options),
      watch: (from, options) => this.watch(from, options),
      compact: (before) => this.compact(before),
      activeWatchers: () => this.activeWatchers(),
      // The view borrows the store; closing it leaves the store open.
      close: async () => undefined,
      [Symbol.asyncDispose]: async () => undefined,
    };
  }

  async get(key: string): Promise<KeyValue | undefined> {
    validateKey(key);
    const response = await this.#call("read", () => this.#client.kv.range({ key: this.#keys.key(key) }));
    const kv = response.kvs[0];
    return kv === undefined ? undefined : this.#keys.keyValue(kv);
  }

  async list(prefix: string, options: ListOptions = {}): Promise<ListResult> {
    validatePrefix(prefix);
    const limit = validateLimit(options.limit, "limit");
    const range = this.#keys.range(prefix);
    if (options.startAfter !== undefined) {
      const after = keyAfter(this.#keys.key(validatePrefix(options.startAfter, "startAfter")));
      if (Buffer.compare(after, range.key) > 0) range.key = after;
    }
    const response = await this.#call("read", () =>
      this.#client.kv.range({ ...range, ...(limit === undefined ? {} : { limit }) }),
    );
    return {
      items: response.kvs.map((kv) => this.#keys.keyValue(kv)),
      revision: Number(response.header.revision),
      more: limit !== undefined && response.more,
    };
  }

  commit(txn: Txn): Promise<TxnResult> {
    return this.#commit(txn, undefined);
  }

  async #commit(txn: Txn, fence: Fence | undefined): Promise<TxnResult> {
    validateTxn(txn);
    const compare = (txn.compares ?? []).map((c) => ({
      key: this.#keys.key(c.key),
      target: "Mod" as const,
      result: "Equal" as const,
      mod_revision: c.modRevision,
    }));
    const response = await this.#call("write", () =>
      this.#client.kv.txn({
        compare: [
          ...compare,
          ...(fence === undefined
            ? []
            : [
                {
                  key: fence.key,
                  target: "Create" as const,
                  result: "Equal" as const,
                  create_revision: fence.createRevision,
                },
              ]),
        ],
        // On failure, the claim as etcd sees it: tells a lost lead from an ordinary conflict.
        failure: fence === undefined ? [] : [{ request_range: { key: fence.key } }],
        success: txn.ops.map((op) => {
          if (op.type === "put")
            return {
              request_put: { key: this.#keys.key(op.key), value: Buffer.from(op.value, "utf8") },
            };
          if (op.type === "delete") return { request_delete_range: { key: this.#keys.key(op.key) } };
          return { request_delete_range: this.#keys.range(op.prefix) };
        }),
      }),
    );
    if (!response.succeeded && fence !== undefined) {
      const held = response.responses[0]?.response_range?.kvs[0];
      if (held === undefined || Number(held.create_revision) !== fence.createRevision)
        throw notLeading(
          `a fenced write was refused: this controller's leader claim (revision ${fence.createRevision}) is gone`,
          true,
        );
    }
    const revision = Number(response.header.revision);
    if (response.succeeded) for (const listener of this.#committed) listener(txn, revision);
    return { succeeded: response.succeeded, revision };
  }

  /** Hears every txn this store applied (a read cache uses it to read its own writes). */
  onCommitted(listener: (txn: Txn, revision: number) => void): () => void {
    this.#committed.add(listener);
    return () => this.#committed.delete(listener);
  }

  async revision(): Promise<number> {
    // A point read of one key is the cheapest call that carries the cluster revision in its header.
    const response = await this.#call("read", () =>
      this.#client.kv.range({ key: this.#keys.key(""), keys_only: true, limit: 1 }),
    );
    return Number(response.header.revision);
  }

  async changes(fromRevision: number, options: ChangesOptions = {}): Promise<StoreEvent[]> {
    validateRevision(fromRevision, "fromRevision");
    const prefix = validatePrefix(options.prefix ?? "");
    const limit = validateLimit(options.limit, "limit");
    return (await this.#readHistory(fromRevision, prefix, limit)).events;
  }

  watch(fromRevision: number, options: WatchOptions): AsyncIterable<StoreEvent[]> {
    return this.#watch(fromRevision, options);
  }

  async compact(beforeRevision: number): Promise<void> {
    validateRevision(beforeRevision, "beforeRevision");
    const current = await this.revision();
    if (beforeRevision > current + 1)
      throw new CorralError(
        ErrorCode.OutOfRange,
        `cannot compact before revision ${beforeRevision}: the current revision is ${current}`,
      );
    // etcd keeps the revision it compacts at and refuses a future one, so "before current + 1" is "at current".
    const target = Math.min(beforeRevision, current);
    if (target <= 1) return;
    try {
      await this.#call("read", () => this.#client.kv.compact({ revision: target, physical: true }));
    } catch (error) {
      // Compacting at or below the compaction point is a no-op, as in every Store.
      if (error instanceof CorralError && /has been compacted/.test(error.message)) return;
      throw error;
    }
  }

  /** Whether etcd answers, with its revision and database size, for `corral status`. */
  async health(): Promise<{ healthy: boolean; message: string; revision: number; dbSizeBytes: number }> {
    try {
      const status = await this.#call("read", () => this.#client.maintenance.status());
      return {
        healthy: true,
        message: `etcd ${status.version} (${this.#endpoints.join(", ")})`,
        revision: Number(status.header.revision),
        dbSizeBytes: Number(status.dbSize),
      };
    } catch (error) {
      return { healthy: false, message: this.#error(error).message, revision: 0, dbSizeBytes: 0 };
    }
  }

  activeWatchers(): number {
    return this.#watchers.size;
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    for (const [watcher, stop] of this.#watchers) {
      stop();
      watcher.fail(storeErrors.closed());
    }
    this.#watchers.clear();
    this.#client.close();
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.close();
  }

  /**
   * Events from `from` under `prefix`, whole revisions only, read with a watch on the whole keyspace that
   * stops at the revision current when the read began: every revision has at least one event somewhere in
   * the keyspace, so the read knows when it is complete even where `prefix` saw no change. `through` is the
   * last revision the read covered.
   */
  async #readHistory(
    from: number,
    prefix: string,
    limit: number | undefined,
  ): Promise<{ events: StoreEvent[]; through: number }> {
    const current = await this.revision();
    const start = Math.max(from, 1);
    if (start > current) return { events: [], through: current };
    return await new Promise((resolve, reject) => {
      const events: StoreEvent[] = [];
      let cutoff: number | undefined;
      let settled = false;
      const settle = (outcome: () => void): void => {
        if (settled) return;
        settled = true;
        stream.cancel();
        outcome();
      };
      const onResponse = (response: IWatchResponse): void => {
        if (response.canceled) {
          settle(() => reject(this.#cancelError(response, from)));
          return;
        }
        for (const event of response.events) {
          const revision = Number(event.kv.mod_revision);
          if (revision > (cutoff ?? current)) {
            settle(() => resolve({ events, through: cutoff ?? current }));
            return;
          }
          if (!this.#keys.owns(event.kv.key, prefix)) continue;
          events.push(this.#keys.event(event));
          if (limit !== undefined && cutoff === undefined && events.length >= limit) cutoff = revision;
        }
        const last = response.events.at(-1);
        if (last !== undefined && Number(last.kv.mod_revision) >= (cutoff ?? current))
          settle(() => resolve({ events, through: cutoff ?? current }));
      };
      const stream: WatchStream = openWatchStream(this.#client, {
        key: everyKey.key,
        rangeEnd: everyKey.range_end,
        startRevision: start,
        onResponse,
        onError: (error) => settle(() => reject(this.#error(error))),
      });
    });
  }

  async *#watch(fromRevision: number, options: WatchOptions): AsyncGenerator<StoreEvent[]> {
    validateRevision(fromRevision, "fromRevision");
    const prefix = validatePrefix(options.prefix ?? "");
    const maxLag = validateLimit(options.maxLag, "maxLag") ?? this.#watchMaxLag;
    const { signal } = options;
    if (this.#closed) throw storeErrors.closed();
    if (signal.aborted) return;
    const buffer = new WatchBuffer(maxLag);
    let stream: WatchStream | undefined;
    let released = false;
    const stop = (): void => {
      stream?.cancel();
      this.#watchers.delete(buffer);
    };
    // Abort releases everything at once, even while the consumer is not pulling.
    const release = (): void => {
      if (released) return;
      released = true;
      buffer.close();
      stop();
      signal.removeEventListener("abort", release);
    };
    signal.addEventListener("abort", release, { once: true });
    this.#watchers.set(buffer, () => stream?.cancel());
    try {
      let next = Math.max(fromRevision, 1);
      // Far behind: read history page by page as the consumer pulls, so a long replay cannot lag.
      while (!released) {
        const current = await this.revision();
        if (current - next + 1 <= Math.min(maxLag, replayPageSize)) break;
        const page = await this.#readHistory(next, prefix, replayPageSize);
        next = page.through + 1;
        if (page.events.length > 0) yield page.events;
      }
      if (!released && this.#watchers.has(buffer)) {
        let lastDelivered = next - 1;
        let lostSince: number | undefined;
        const follow = (from: number): void => {
          const range = this.#keys.range(prefix);
          stream = openWatchStream(this.#client, {
            key: range.key,
            rangeEnd: range.range_end,
            startRevision: from,
            onResponse: (response) => {
              lostSince = undefined;
              if (response.canceled) {
                buffer.fail(this.#cancelError(response, lastDelivered + 1));
                stop();
                return;
              }
              for (const batch of byRevision(response.events.map((event) => this.#keys.event(event)))) {
                if (!buffer.push(batch)) {
                  stop();
                  return;
                }
                lastDelivered = batch[0]?.revision ?? lastDelivered;
              }
            },
            onError: (error) => {
              if (released || this.#closed) return;
              // Resume from the next revision once etcd answers again; give up after watchReconnectMs.
              lostSince ??= Date.now();
              if (Date.now() - lostSince > this.#watchReconnectMs) {
                buffer.fail(
                  new CorralError(
                    ErrorCode.Unavailable,
                    `lost the etcd watch (${error.message}); resume from revision ${lastDelivered + 1}`,
                    { cause: error, details: { resumeRevision: String(lastDelivered + 1) } },
                  ),
                );
                stop();
                return;
              }
              setTimeout(() => {
                if (!released && !this.#closed && this.#watchers.has(buffer)) follow(lastDelivered + 1);
              }, 250).unref();
            },
          });
        };
        follow(next);
      }
      for (let batch = await buffer.next(); batch !== undefined; batch = await buffer.next()) yield batch;
    } finally {
      release();
    }
  }

  #cancelError(response: IWatchResponse, requested: number): CorralError {
    const compacted = Number(response.compact_revision);
    if (compacted > 0) return storeErrors.compacted(requested, compacted);
    return new CorralError(ErrorCode.Unavailable, `etcd cancelled the watch: ${response.cancel_reason}`);
  }

  /**
   * One etcd call, sent again (after a short pause) when etcd could not be reached: reads always, a
   * write only when the failure shows the request never left (a write whose answer was lost may have
   * been applied, and is reported as UNAVAILABLE rather than applied twice).
   */
  async #call<T>(kind: "read" | "write", work: () => Promise<T>): Promise<T> {
    for (let attempt = 1; ; attempt++) {
      if (this.#closed) throw storeErrors.closed();
      try {
        return await work();
      } catch (error) {
        const retry =
          attempt < callAttempts &&
          !this.#closed &&
          (error instanceof GRPCUnavailableError || error instanceof GRPCDeadlineExceededError) &&
          (kind === "read" || neverSent(error));
        if (!retry) throw this.#error(error);
        await sleep(100 * attempt);
      }
    }
  }

  #error(error: unknown): CorralError {
    if (error instanceof CorralError) return error;
    if (this.#closed || error instanceof ClientClosedError) return storeErrors.closed();
    if (error instanceof GRPCUnavailableError)
      return new CorralError(ErrorCode.Unavailable, `etcd is unavailable: ${error.message}`, {
        cause: error,
      });
    const message = error instanceof Error ? error.message : String(error);
    if (/required revision is a future revision/.test(message))
      return new CorralError(ErrorCode.OutOfRange, message, { cause: error });
    if (/deadline exceeded/i.test(message))
      return new CorralError(ErrorCode.DeadlineExceeded, message, { cause: error });
    return CorralError.from(error);
  }
}

function notLeading(message: string, fenced = false): CorralError {
  return new CorralError(ErrorCode.FailedPrecondition, message, {
    details: fenced ? { fenced: "true" } : {},
  });
}

/** Splits events in revision order into one batch per revision. */
function byRevision(events: StoreEvent[]): StoreEvent[][] {
  const batches: StoreEvent[][] = [];
  for (const event of events) {
    const batch = batches.at(-1);
    if (batch !== undefined && batch[0]?.revision === event.revision) batch.push(event);
    else batches.push([event]);
  }
  return batches;
}
