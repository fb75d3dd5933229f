import type { Clock } from "../core/clock.ts";
import type { EventFeed } from "../core/event-feed.ts";
import type { NodeRegistry } from "../core/node-registry.ts";
import type { Store } from "../store/store.ts";

/** Facts about the running controller that several faces report. */
export interface ClusterFacts {
  readonly clusterId: string;
  readonly controllerNodeId: string;
  readonly controllerName: string;
  /** host:port other members use to reach this controller (go-cart-actor's `host`). */
  readonly advertiseAddress: string;
  readonly version: string;
  readonly startedAt: number;
  readonly storeKind: string;
}

/** What a face may use: the core and the facts. Faces translate; rules live in the core. */
export interface FaceContext {
  readonly registry: NodeRegistry;
  readonly feed: EventFeed;
  readonly store: Store;
  readonly clock: Clock;
  readonly facts: ClusterFacts;
}
