import type { Logger } from "../observability/logger.ts";

/**
 * Where last-seen batches travel between controllers (the controller registry on etcd): publishing answers
 * false while this controller has no lease to write under.
 */
export interface LastSeenChannel {
  publishLastSeen(seen: Record<string, number>): Promise<boolean>;
  followLastSeen(onBatch: (batch: { readonly seen: Readonly<Record<string, number>> }) => void): {
    close(): void;
  };
}

/** The part of Membership the batcher drives. */
export interface HeardNodes {
  takeHeard(): Record<string, number>;
  observeRemote(nodeId: string, at: number): Promise<void>;
}

export interface LastSeenBatcherOptions {
  readonly registry: LastSeenChannel;
  readonly membership: HeardNodes;
  /** How often this controller publishes what it heard. */
  readonly everyMs: number;
  readonly logger: Logger;
}

/**
 * Heartbeats at scale on etcd: a controller publishes the last-seen times of the nodes it heard as one
 * write every `everyMs` (nothing when it heard nothing), under its own lease, and takes in the batches
 * the other controllers publish through one watch. N controllers make N writes a period however many
 * agents heartbeat. A batch that could not be written is kept and merged into the next one.
 */
export class LastSeenBatcher {
  readonly #o: LastSeenBatcherOptions;
  readonly #timer: NodeJS.Timeout;
  readonly #follow: { close(): void };
  #pending: Record<string, number> = {};
  #flushing: Promise<void> | undefined;
  /** Batches written and node times carried, for /metrics and the bench. */
  readonly stats = { batches: 0, entries: 0 };

  constructor(options: LastSeenBatcherOptions) {
    this.#o = options;
    this.#follow = options.registry.followLastSeen((batch) => {
      for (const [nodeId, at] of Object.entries(batch.seen)) {
        options.membership
          .observeRemote(nodeId, at)
          .catch((error: unknown) =>
            options.logger.warn({ err: error, nodeId }, "could not apply a last-seen time"),
          );
      }
    });
    this.#timer = setInterval(() => void this.flush(), options.everyMs);
    this.#timer.unref();
  }

  /** Publishes what was heard since the last flush (also on close, so a handover loses nothing). */
  flush(): Promise<void> {
    this.#flushing ??= this.#flush().finally(() => {
      this.#flushing = undefined;
    });
    return this.#flushing;
  }

  async #flush(): Promise<void> {
    for (const [nodeId, at] of Object.entries(this.#o.membership.takeHeard()))
      this.#pending[nodeId] = Math.max(at, this.#pending[nodeId] ?? 0);
    const batch = this.#pending;
    const entries = Object.keys(batch).length;
    if (entries === 0) return;
    this.#pending = {};
    try {
      if (!(await this.#o.registry.publishLastSeen(batch))) throw new Error("no controller lease yet");
      this.stats.batches++;
      this.stats.entries += entries;
    } catch (error) {
      for (const [nodeId, at] of Object.entries(batch))
        this.#pending[nodeId] = Math.max(at, this.#pending[nodeId] ?? 0);
      this.#o.logger.debug(
        { err: (error as Error).message, entries },
        "last-seen batch kept for the next flush",
      );
    }
  }

  async close(): Promise<void> {
    clearInterval(this.#timer);
    await this.flush().catch(() => undefined);
    this.#follow.close();
  }
}
