import { CorralError } from "../../base/errors.ts";
import type { Store } from "../../store/store.ts";
import {
  type ClusterEvent,
  type ClusterEventKind,
  clusterEventDecoders,
  decodeClusterEvent,
  type EventDecoder,
} from "./cluster-event.ts";

export interface FeedWatchOptions {
  /** First revision to deliver; absent means live only (from the current revision + 1). */
  fromRevision?: number;
  /** Only these kinds; absent or empty means all. */
  kinds?: ClusterEventKind[];
  signal: AbortSignal;
  /** Events this subscriber may fall behind before it is dropped; the store's default when absent. */
  maxLag?: number;
}

export interface EventFeedOptions {
  decoders?: readonly EventDecoder[];
  maxLag?: number;
}

/**
 * The one ordered feed of cluster changes: the store's events, decoded by key prefix. A subscriber that
 * falls too far behind gets RESOURCE_EXHAUSTED with `details.resumeRevision`; watching again from that
 * revision continues without a gap, even after a restart, as long as the store still holds the history.
 */
export class EventFeed {
  readonly #store: Store;
  readonly #decoders: readonly EventDecoder[];
  readonly #maxLag: number | undefined;

  constructor(store: Store, options: EventFeedOptions = {}) {
    this.#store = store;
    this.#decoders = options.decoders ?? clusterEventDecoders;
    this.#maxLag = options.maxLag;
  }

  /** Events of the kinds asked for, typed as such (all kinds when none are given). */
  watch<K extends ClusterEventKind = ClusterEventKind>(
    options: FeedWatchOptions & { kinds?: K[] },
  ): AsyncIterable<Extract<ClusterEvent, { kind: K }>> {
    return this.#watch(options) as AsyncIterable<Extract<ClusterEvent, { kind: K }>>;
  }

  async *#watch(options: FeedWatchOptions): AsyncGenerator<ClusterEvent> {
    const decoders = this.#select(options.kinds ?? []);
    const fromRevision = options.fromRevision ?? (await this.#store.revision()) + 1;
    const [only] = decoders;
    const maxLag = options.maxLag ?? this.#maxLag;
    const batches = this.#store.watch(fromRevision, {
      signal: options.signal,
      // One kind narrows the store watch to its prefix; several are filtered here.
      ...(decoders.length === 1 && only !== undefined ? { prefix: only.prefix } : {}),
      ...(maxLag === undefined ? {} : { maxLag }),
    });
    for await (const batch of batches) {
      for (const event of batch) {
        const decoded = decodeClusterEvent(event, decoders);
        if (decoded !== undefined) yield decoded;
      }
    }
  }

  #select(kinds: readonly ClusterEventKind[]): readonly EventDecoder[] {
    if (kinds.length === 0) return this.#decoders;
    for (const kind of kinds) {
      if (!this.#decoders.some((decoder) => decoder.kind === kind))
        throw CorralError.invalidArgument("kinds", `"${kind}" is not a kind of cluster event`);
    }
    return this.#decoders.filter((decoder) => kinds.includes(decoder.kind));
  }
}
