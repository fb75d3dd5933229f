import type { Clock } from "../core/clock.ts";
import { CorralError } from "../core/errors.ts";
import type { EventFeed } from "../core/event-feed.ts";
import { LivenessTracker } from "../core/liveness.ts";
import type { NodeRegistry } from "../core/node-registry.ts";
import { defaults } from "../defaults.ts";
import type { Logger } from "../observability/logger.ts";

export interface MembershipOptions {
  readonly registry: NodeRegistry;
  readonly feed: EventFeed;
  readonly clock: Clock;
  readonly logger: Logger;
  readonly controllerNodeId: string;
  readonly liveness?: {
    readonly minInterval?: string;
    readonly maxHeartbeatsPerSecond?: number;
    readonly suspectAfterMissed?: number;
    readonly downAfter?: string;
  };
  /** How often silent nodes are looked for. */
  readonly sweepEveryMs?: number;
  /** Only the leader sweeps (marks silent nodes suspect/down); default: always. */
  readonly isLeader?: () => boolean;
}

/**
 * Liveness of the agents: heartbeats land in memory (the tracker), and only changes of state
 * (ready → suspect → down, and back) are written to the registry, where they become events.
 */
export class Membership implements AsyncDisposable {
  readonly #o: MembershipOptions;
  readonly #tracker: LivenessTracker;
  readonly #stop = new AbortController();
  #sweeper: NodeJS.Timeout | undefined;
  #following: Promise<void> | undefined;

  constructor(options: MembershipOptions) {
    this.#o = options;
    this.#tracker = new LivenessTracker({ clock: options.clock, ...defaults.liveness, ...options.liveness });
    // The controller's own node is alive for as long as anyone can ask.
    options.registry.takeLastSeenFrom((id) =>
      this.#isAgent(id) ? this.#tracker.lastSeen(id) : options.clock.now(),
    );
  }

  async start(): Promise<void> {
    const { nodes, revision } = await this.#o.registry.list();
    for (const node of nodes) if (this.#isAgent(node.id)) this.#tracker.track(node.id, node.status);
    this.#following = this.#follow(revision + 1).catch((error: unknown) => {
      if (!this.#stop.signal.aborted)
        this.#o.logger.error({ err: error }, "membership stopped following the event feed");
    });
    this.#sweeper = setInterval(() => void this.#sweep(), this.#o.sweepEveryMs ?? 1_000);
    this.#sweeper.unref();
  }

  /** The interval a node should wait before its next heartbeat (jittered, grows with the fleet). */
  nextInterval(): number {
    return this.#tracker.nextInterval(this.#tracker.size);
  }

  async heartbeat(nodeId: string): Promise<number> {
    if (this.#tracker.status(nodeId) === undefined) {
      const node = await this.#o.registry.get(nodeId);
      if (node.status === "left" || node.status === "pending") {
        throw new CorralError(
          "FAILED_PRECONDITION",
          `node ${node.name} is ${node.status}; it cannot heartbeat`,
        );
      }
      this.#tracker.track(nodeId, node.status);
    }
    const transition = this.#tracker.heartbeat(nodeId);
    if (transition !== undefined) await this.#apply(transition.nodeId, transition.to, transition.from);
    return this.nextInterval();
  }

  lastSeen(nodeId: string): number | undefined {
    return this.#tracker.lastSeen(nodeId);
  }

  async #sweep(): Promise<void> {
    if (this.#o.isLeader?.() === false) return;
    for (const transition of this.#tracker.sweep()) {
      await this.#apply(transition.nodeId, transition.to, transition.from);
    }
  }

  async #apply(nodeId: string, to: "ready" | "suspect" | "down", from: string): Promise<void> {
    try {
      await this.#o.registry.setStatus(nodeId, to);
      this.#o.logger.info({ nodeId, from, to }, `node is ${to}`);
    } catch (error) {
      if (error instanceof CorralError && error.code === "NOT_FOUND") this.#tracker.forget(nodeId);
      else this.#o.logger.warn({ err: error, nodeId, to }, "could not record a liveness change");
    }
  }

  /** New nodes are tracked, removed or departed ones forgotten, whichever controller changed them. */
  async #follow(fromRevision: number): Promise<void> {
    for await (const event of this.#o.feed.watch({
      fromRevision,
      kinds: ["node"],
      signal: this.#stop.signal,
    })) {
      const node = event.node;
      if (node === undefined || !this.#isAgent(node.id)) continue;
      if (event.type === "node.deleted") this.#tracker.forget(node.id);
      else if (
        this.#tracker.status(node.id) === undefined ||
        node.status === "left" ||
        node.status === "pending"
      ) {
        this.#tracker.track(node.id, node.status);
      }
    }
  }

  #isAgent(nodeId: string): boolean {
    return nodeId !== this.#o.controllerNodeId;
  }

  async close(): Promise<void> {
    if (this.#sweeper !== undefined) clearInterval(this.#sweeper);
    this.#stop.abort();
    await this.#following;
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.close();
  }
}
