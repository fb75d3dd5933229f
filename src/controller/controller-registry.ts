import type { Etcd3, IWatchResponse, Lease } from "etcd3";
import type { Logger } from "../observability/logger.ts";
import { KeySpace } from "../store/etcd/etcd-keys.ts";
import { openWatchStream, type WatchStream } from "../store/etcd/etcd-watch.ts";

/** What a controller says about itself while it runs; gone with its lease when it dies. */
export interface ControllerInfo {
  readonly name: string;
  /** The TLS cluster listener (agents' `--join`). */
  readonly clusterAddress: string;
  readonly version: string;
  readonly startedAt: number;
}

/** A batch of last-seen times (ms since the epoch) of nodes whose heartbeats one controller received. */
export interface LastSeenBatch {
  readonly controller: string;
  readonly seen: Readonly<Record<string, number>>;
}

export interface ControllerRegistryOptions {
  readonly client: Etcd3;
  /** The store's prefix: one registry per cluster sharing an etcd. */
  readonly prefix: string;
  readonly info: ControllerInfo;
  /** TTL of this controller's lease, in whole seconds. */
  readonly ttlSeconds: number;
  readonly logger: Logger;
}

/**
 * Like the election, these keys live beside the store's prefix, not under it: they are not cluster
 * state (no event in the feed, nothing in a snapshot), they come and go with each controller's lease.
 */
export const controllersRoot = "__corral_controllers";

/** How long to wait before granting a new lease after the last one was lost. */
const regrantMs = 500;

/**
 * Every controller registers itself under a lease of its own (`<root><prefix>/members/<name>`), so the
 * list of controllers is the list of live ones. The same lease carries the controller's batched
 * last-seen times (`<root><prefix>/last-seen/<name>`): heartbeats land in the memory of whichever
 * controller an agent talks to, and reach the others as one etcd write per controller every few
 * seconds instead of one per heartbeat.
 */
export class ControllerRegistry {
  readonly #o: ControllerRegistryOptions;
  readonly #members: KeySpace;
  readonly #lastSeen: KeySpace;
  #lease: Lease | undefined;
  #regrant: NodeJS.Timeout | undefined;
  #closed = false;

  static async start(options: ControllerRegistryOptions): Promise<ControllerRegistry> {
    const registry = new ControllerRegistry(options);
    await registry.#register();
    return registry;
  }

  private constructor(options: ControllerRegistryOptions) {
    this.#o = options;
    this.#members = new KeySpace(`${controllersRoot}${options.prefix}/members/`);
    this.#lastSeen = new KeySpace(`${controllersRoot}${options.prefix}/last-seen/`);
  }

  /** The controllers alive now (their lease holds), by name. */
  async list(): Promise<ControllerInfo[]> {
    const response = await this.#o.client.kv.range(this.#members.range(""));
    return response.kvs
      .map((kv) => JSON.parse(kv.value.toString("utf8")) as ControllerInfo)
      .sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  }

  /** Publishes this controller's batch (replacing its previous one); false while it has no lease. */
  async publishLastSeen(seen: Record<string, number>): Promise<boolean> {
    const lease = this.#lease;
    if (lease === undefined) return false;
    const batch: LastSeenBatch = { controller: this.#o.info.name, seen };
    await lease.put(this.#lastSeen.key(this.#o.info.name)).value(JSON.stringify(batch));
    return true;
  }

  /**
   * Every batch other controllers publish from now on, as it is written; reconnects by itself after
   * etcd comes back and resumes after the last batch it delivered (or from now, if that was compacted).
   */
  followLastSeen(onBatch: (batch: LastSeenBatch) => void): { close(): void } {
    let stream: WatchStream | undefined;
    let retry: NodeJS.Timeout | undefined;
    let closed = false;
    let next: number | undefined;
    const open = async (): Promise<void> => {
      if (closed || this.#closed) return;
      const range = this.#lastSeen.range("");
      if (next === undefined) {
        const response = await this.#o.client.kv.range({ ...range, keys_only: true, limit: 1 });
        next = Number(response.header.revision) + 1;
      }
      stream = openWatchStream(this.#o.client, {
        key: range.key,
        rangeEnd: range.range_end,
        startRevision: next,
        onResponse: (response: IWatchResponse) => {
          if (response.canceled) {
            // Compacted past what was missed: the next batches carry fresher times anyway.
            next = undefined;
            again();
            return;
          }
          for (const event of response.events) {
            next = Number(event.kv.mod_revision) + 1;
            if (event.type !== "Put") continue;
            try {
              const batch = JSON.parse(event.kv.value.toString("utf8")) as LastSeenBatch;
              if (batch.controller !== this.#o.info.name) onBatch(batch);
            } catch (error) {
              this.#o.logger.warn({ err: error }, "ignored a damaged last-seen batch");
            }
          }
        },
        onError: () => again(),
      });
    };
    const again = (): void => {
      stream?.cancel();
      if (closed || this.#closed || retry !== undefined) return;
      retry = setTimeout(() => {
        retry = undefined;
        open().catch(() => again());
      }, regrantMs);
      retry.unref();
    };
    open().catch(() => again());
    return {
      close: () => {
        closed = true;
        if (retry !== undefined) clearTimeout(retry);
        stream?.cancel();
      },
    };
  }

  async #register(): Promise<void> {
    const lease = this.#o.client.lease(this.#o.ttlSeconds, { autoKeepAlive: true });
    this.#lease = lease;
    lease.on("lost", (error: Error) => {
      if (this.#lease !== lease || this.#closed) return;
      this.#lease = undefined;
      this.#o.logger.warn({ err: error.message }, "controller lease lost; registering again");
      this.#scheduleRegister();
    });
    try {
      await lease.put(this.#members.key(this.#o.info.name)).value(JSON.stringify(this.#o.info));
    } catch (error) {
      if (this.#lease === lease) this.#lease = undefined;
      lease.release();
      throw error;
    }
  }

  #scheduleRegister(): void {
    if (this.#closed || this.#regrant !== undefined) return;
    this.#regrant = setTimeout(() => {
      this.#regrant = undefined;
      this.#register().catch((error: unknown) => {
        this.#o.logger.warn({ err: (error as Error).message }, "could not register the controller yet");
        this.#scheduleRegister();
      });
    }, regrantMs);
    this.#regrant.unref();
  }

  /** Revokes the lease: this controller leaves the list at once. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    if (this.#regrant !== undefined) clearTimeout(this.#regrant);
    const lease = this.#lease;
    this.#lease = undefined;
    await lease?.revoke().catch(() => lease.release());
  }
}
