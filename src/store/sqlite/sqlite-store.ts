import BetterSqlite3 from "better-sqlite3";
import { CorralError, ErrorCode } from "../../base/errors.ts";
import { storeLimits } from "../limits.ts";
import type { Store } from "../store.ts";
import { storeErrors } from "../store-errors.ts";
import {
  prefixEnd,
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
import { type Applied, applyTxn, compactHistory, type Retention } from "./apply-txn.ts";
import { readEvents, readMeta, rowToKeyValue } from "./history.ts";
import { type Migration, migrate } from "./migrations.ts";
import { prepareStatements, type Statements } from "./statements.ts";

export interface SqliteStoreOptions {
  /** A file path, or ":memory:" for a store that lives as long as the object. */
  path: string;
  /** Revisions of history kept for watches and changes(); default 100 000. */
  retainRevisions?: number;
  /** How often (in revisions) old history is dropped; default 1 000. */
  compactEvery?: number;
  /** Default for WatchOptions.maxLag; default 10 000 events. */
  watchMaxLag?: number;
  /** How long a write waits for another process's lock; default 5 000 ms. */
  busyTimeoutMs?: number;
  /** The schema to migrate to; tests pass their own lists. */
  migrations?: readonly Migration[];
}

/** Events read per step while a watcher replays history. */
const replayPageSize = 1_000;

/**
 * The embedded Store: one better-sqlite3 connection in WAL mode. Calls are synchronous underneath, so
 * every commit is atomic with respect to this process's other callers; IMMEDIATE transactions keep the
 * revision right when other processes write the same file (their commits are not pushed to our watchers).
 */
export class SqliteStore implements Store {
  readonly #db: BetterSqlite3.Database;
  readonly #statements: Statements;
  readonly #retention: Retention;
  readonly #watchMaxLag: number;
  readonly #commitTxn: (txn: Txn) => Applied;
  /** Every open watch; its listener is set once it has caught up with history and gets live commits. */
  readonly #watchers = new Map<WatchBuffer, ((events: StoreEvent[]) => void) | undefined>();
  #closed = false;

  static async open(options: SqliteStoreOptions): Promise<SqliteStore> {
    const db = new BetterSqlite3(options.path);
    try {
      db.pragma("journal_mode = WAL");
      db.pragma("synchronous = NORMAL");
      db.pragma(`busy_timeout = ${Math.trunc(options.busyTimeoutMs ?? 5_000)}`);
      migrate(db, options.migrations);
      return new SqliteStore(db, options);
    } catch (error) {
      db.close();
      throw sqliteError(error);
    }
  }

  private constructor(db: BetterSqlite3.Database, options: SqliteStoreOptions) {
    this.#db = db;
    this.#statements = prepareStatements(db);
    this.#retention = {
      keep: validateLimit(options.retainRevisions, "retainRevisions") ?? 100_000,
      every: validateLimit(options.compactEvery, "compactEvery") ?? 1_000,
    };
    this.#watchMaxLag = validateLimit(options.watchMaxLag, "watchMaxLag") ?? storeLimits.defaultWatchMaxLag;
    const transaction = db.transaction((txn: Txn) => applyTxn(this.#statements, txn, this.#retention));
    this.#commitTxn = (txn) => transaction.immediate(txn);
  }

  async get(key: string): Promise<KeyValue | undefined> {
    validateKey(key);
    const row = this.#run(() => this.#statements.getKv.get(key));
    return row === undefined ? undefined : rowToKeyValue(row);
  }

  async list(prefix: string, options: ListOptions = {}): Promise<ListResult> {
    validatePrefix(prefix);
    const limit = validateLimit(options.limit, "limit");
    const after = options.startAfter === undefined ? "" : validatePrefix(options.startAfter, "startAfter");
    return this.#run(() =>
      this.#db.transaction(() => {
        const rows = this.#statements.listKv.all({
          start: prefix,
          end: prefixEnd(prefix),
          after,
          // One extra row tells whether the limit cut the list short; -1 is SQLite's "no limit".
          limit: limit === undefined ? -1 : limit + 1,
        });
        const more = limit !== undefined && rows.length > limit;
        return {
          items: (more ? rows.slice(0, limit) : rows).map(rowToKeyValue),
          revision: readMeta(this.#statements, "revision"),
          more,
        };
      })(),
    );
  }

  async commit(txn: Txn): Promise<TxnResult> {
    validateTxn(txn);
    const applied = this.#run(() => this.#commitTxn(txn));
    if (applied.events.length > 0) {
      for (const listener of [...this.#watchers.values()]) listener?.(applied.events);
    }
    return { succeeded: applied.succeeded, revision: applied.revision };
  }

  async revision(): Promise<number> {
    return this.#run(() => readMeta(this.#statements, "revision"));
  }

  /** What `corral status` shows: SQLite's version, the revision, and the database's size on disk. */
  async health(): Promise<{ healthy: boolean; message: string; revision: number; dbSizeBytes: number }> {
    try {
      return this.#run(() => {
        const version = this.#db.prepare("select sqlite_version() as v").get() as { v: string };
        const pages = this.#db.pragma("page_count", { simple: true }) as number;
        const pageSize = this.#db.pragma("page_size", { simple: true }) as number;
        return {
          healthy: true,
          message: `SQLite ${version.v}`,
          revision: readMeta(this.#statements, "revision"),
          dbSizeBytes: pages * pageSize,
        };
      });
    } catch (error) {
      return { healthy: false, message: (error as Error).message, revision: 0, dbSizeBytes: 0 };
    }
  }

  async changes(fromRevision: number, options: ChangesOptions = {}): Promise<StoreEvent[]> {
    validateRevision(fromRevision, "fromRevision");
    const prefix = validatePrefix(options.prefix ?? "");
    const limit = validateLimit(options.limit, "limit");
    return this.#run(() => this.#readChanges(fromRevision, prefix, limit));
  }

  watch(fromRevision: number, options: WatchOptions): AsyncIterable<StoreEvent[]> {
    return this.#watch(fromRevision, options);
  }

  async compact(beforeRevision: number): Promise<void> {
    validateRevision(beforeRevision, "beforeRevision");
    this.#run(() =>
      this.#db
        .transaction(() => {
          const current = readMeta(this.#statements, "revision");
          if (beforeRevision > current + 1)
            throw new CorralError(
              ErrorCode.OutOfRange,
              `cannot compact before revision ${beforeRevision}: the current revision is ${current}`,
            );
          compactHistory(this.#statements, beforeRevision);
        })
        .immediate(),
    );
  }

  activeWatchers(): number {
    return this.#watchers.size;
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    for (const watcher of this.#watchers.keys()) watcher.fail(storeErrors.closed());
    this.#watchers.clear();
    this.#db.close();
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.close();
  }

  /** Compacted-history check and read in one snapshot, so compaction cannot slip between them. */
  #readChanges(from: number, prefix: string, limit: number | undefined): StoreEvent[] {
    return this.#db.transaction(() => {
      const compacted = readMeta(this.#statements, "compact_revision");
      if (from < compacted) throw storeErrors.compacted(from, compacted);
      return readEvents(this.#statements, from, prefix, limit);
    })();
  }

  async *#watch(fromRevision: number, options: WatchOptions): AsyncGenerator<StoreEvent[]> {
    validateRevision(fromRevision, "fromRevision");
    const prefix = validatePrefix(options.prefix ?? "");
    const maxLag = validateLimit(options.maxLag, "maxLag") ?? this.#watchMaxLag;
    const { signal } = options;
    if (this.#closed) throw storeErrors.closed();
    if (signal.aborted) return;
    const buffer = new WatchBuffer(maxLag);
    const listener = (events: StoreEvent[]): void => {
      const mine = events.filter((event) => event.key.startsWith(prefix));
      if (!buffer.push(mine)) this.#watchers.delete(buffer);
    };
    // Abort releases everything at once, even while the consumer is not pulling.
    const release = (): void => {
      buffer.close();
      this.#watchers.delete(buffer);
      signal.removeEventListener("abort", release);
    };
    signal.addEventListener("abort", release, { once: true });
    this.#watchers.set(buffer, undefined);
    try {
      let next = Math.max(fromRevision, 1);
      while (!signal.aborted) {
        const page = this.#run(() => this.#readChanges(next, prefix, replayPageSize));
        const last = page.at(-1);
        if (last === undefined) {
          // Caught up: subscribe in the same synchronous step as the empty read, so no commit falls between.
          this.#watchers.set(buffer, listener);
          break;
        }
        next = last.revision + 1;
        yield page;
      }
      for (let batch = await buffer.next(); batch !== undefined; batch = await buffer.next()) yield batch;
    } finally {
      release();
    }
  }

  #run<T>(work: () => T): T {
    if (this.#closed) throw storeErrors.closed();
    try {
      return work();
    } catch (error) {
      throw sqliteError(error);
    }
  }
}

function sqliteError(error: unknown): CorralError {
  if (error instanceof BetterSqlite3.SqliteError) {
    if (error.code === "SQLITE_BUSY" || error.code === "SQLITE_LOCKED")
      return new CorralError(
        ErrorCode.Unavailable,
        `the store is locked by another writer: ${error.message}`,
        {
          cause: error,
        },
      );
    if (error.code === "SQLITE_FULL")
      return new CorralError(ErrorCode.ResourceExhausted, `the disk is full: ${error.message}`, {
        cause: error,
      });
  }
  return CorralError.from(error);
}
