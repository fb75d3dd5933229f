/** One stored key with the revisions etcd would report for it. */
export interface KeyValue {
  key: string;
  value: string;
  /** Revision of the write that created the key (reset when the key is deleted and written again). */
  createRevision: number;
  /** Revision of the last write to the key. */
  modRevision: number;
  /** Number of writes since the key was created; 1 after the first put. */
  version: number;
}

/** Holds when the key's modRevision equals `modRevision`; 0 means the key must not exist. */
export interface Compare {
  key: string;
  modRevision: number;
}

export type Op =
  | { type: "put"; key: string; value: string }
  | { type: "delete"; key: string }
  | { type: "deletePrefix"; prefix: string };

export interface Txn {
  compares?: Compare[];
  ops: Op[];
}

export interface TxnResult {
  /** False when a compare failed; then nothing was written. */
  succeeded: boolean;
  /** The revision the txn wrote, or the current revision when it wrote nothing. */
  revision: number;
}

export interface StoreEvent {
  revision: number;
  type: "put" | "delete";
  key: string;
  /** The new value; present on put. */
  value?: string;
  /** The value before this event, when the key existed. */
  prevValue?: string;
}

export interface ListOptions {
  /** At most this many items (a positive integer). */
  limit?: number;
  /** Only keys sorting after this one: pass the last key of the previous page. */
  startAfter?: string;
}

export interface ListResult {
  /** Sorted by the UTF-8 bytes of the key, as etcd sorts. */
  items: KeyValue[];
  /** The store revision this read reflects. */
  revision: number;
  /** True when `limit` cut the result short. */
  more: boolean;
}

export interface ChangesOptions {
  prefix?: string;
  /**
   * Soft bound on the number of events: a page never splits a revision, so it may hold the whole of its
   * last revision beyond `limit`. Resuming from `lastEvent.revision + 1` therefore loses nothing.
   */
  limit?: number;
}

export interface WatchOptions {
  prefix?: string;
  signal: AbortSignal;
  /** Events a watcher may fall behind before it is dropped with RESOURCE_EXHAUSTED; store default if absent. */
  maxLag?: number;
}
