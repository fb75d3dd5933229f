/**
 * Limits every Store implementation enforces, set to etcd's defaults so that a txn the SQLite store accepts
 * is one etcd accepts too.
 */
export const storeLimits = {
  /** etcd --max-txn-ops. */
  maxTxnOps: 128,
  maxKeyBytes: 4096,
  /** etcd --max-request-bytes is 1.5 MiB for the whole request; a value gets 1 MiB of it. */
  maxValueBytes: 1024 * 1024,
  /** Events a watcher may fall behind before it is dropped. */
  defaultWatchMaxLag: 10_000,
} as const;
