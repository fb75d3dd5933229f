import type {
  ChangesOptions,
  KeyValue,
  ListOptions,
  ListResult,
  StoreEvent,
  Txn,
  TxnResult,
  WatchOptions,
} from "./types.ts";

/**
 * A revisioned key-value store shaped like etcd's v3 API, so that SQLite and etcd pass one conformance
 * suite (`conformance.ts`). Every successful writing txn moves one global revision forward by one.
 * Failures are CorralErrors: INVALID_ARGUMENT for malformed input, OUT_OF_RANGE for compacted history,
 * RESOURCE_EXHAUSTED for a watcher that fell behind, UNAVAILABLE once closed.
 */
export interface Store extends AsyncDisposable {
  get(key: string): Promise<KeyValue | undefined>;

  list(prefix: string, options?: ListOptions): Promise<ListResult>;

  /** Applies all ops under one new revision if every compare holds; a txn that changes nothing keeps the revision. */
  commit(txn: Txn): Promise<TxnResult>;

  /** The current revision: 0 for a store never written. */
  revision(): Promise<number>;

  /**
   * Events with revision >= fromRevision, in order. OUT_OF_RANGE (with the oldest revision still available
   * in the message and in `details.oldestRevision`) when that history was compacted away.
   */
  changes(fromRevision: number, options?: ChangesOptions): Promise<StoreEvent[]>;

  /**
   * History from `fromRevision` in batches, then one batch per committed txn, until `signal` aborts (the
   * iterator then ends without error). A live watcher more than `maxLag` events behind fails with
   * RESOURCE_EXHAUSTED, `details.resumeRevision` naming the revision to watch from again. An implementation
   * may read history on demand while a watcher replays it; such a watcher cannot lag, but gets OUT_OF_RANGE
   * if compaction overtakes it.
   */
  watch(fromRevision: number, options: WatchOptions): AsyncIterable<StoreEvent[]>;

  /** Drops history older than `beforeRevision`; current values stay. */
  compact(beforeRevision: number): Promise<void>;

  /** Open watches right now: for metrics, and for tests that check nothing leaks. */
  activeWatchers(): number;

  /** Ends open watches with UNAVAILABLE and releases the store; calling it twice is harmless. */
  close(): Promise<void>;
}
