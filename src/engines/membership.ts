import { setTimeout as sleep } from "node:timers/promises";
import type { Clock } from "../base/clock.ts";
import { parseDuration } from "../base/duration.ts";
import { CorralError } from "../base/errors.ts";
import type { EventFeed } from "../core/events/event-feed.ts";
import { LivenessTracker, type Transition } from "../core/nodes/liveness.ts";
import type { NodeRegistry } from "../core/nodes/node-registry.ts";
import { defaults } from "../defaults.ts";
import type { Logger } from "../observability/logger.ts";
import { storeLimits } from "../store/limits.ts";

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
    /** A node whose heartbeat stream ended without a goodbye is down this long after (default 2s). */
    readonly streamLostDownAfter?: string;
    /** The cluster listener's keepalive (wired there; accepted here so the whole section passes). */
    readonly keepaliveTime?: string;
    readonly keepaliveTimeout?: string;
  };
  /** How often silent nodes are looked for. */
  readonly sweepEveryMs?: number;
  /** Only the leader sweeps (marks silent nodes suspect/down); default: always. */
  readonly isLeader?: () => boolean;
  /**
   * Where the sweep writes suspect/down: the leader's fenced view of the registry (with etcd), so a
   * deposed leader's sweep is refused by etcd; default `registry`.
   */
  readonly sweepRegistry?: NodeRegistry;
}

/**
 * Liveness of the agents: heartbeats land in memory (the tracker), and only changes of state
 * (ready → suspect → down, and back) are written to the registry, where they become events.
 *
 * With several controllers an agent heartbeats to one of them. Each controller keeps the times it heard
 * (`takeHeard`, published in batches by the LastSeenBatcher) and feeds the batches of the others in
 * (`observeRemote`), so every controller — and so whichever one leads next — knows every node's last
 * heartbeat within one batching period. A node is thus suspected at most one period late; and one that
 * heartbeats on time is never suspected as long as the period is well below the slack of the suspect
 * deadline, (suspectAfterMissed − 1 − jitter) × minInterval (checked where the period is configured).
 */
export class Membership implements AsyncDisposable {
  readonly #o: MembershipOptions;
  readonly #tracker: LivenessTracker;
  readonly #streamLostDownAfter: number;
  readonly #writeBatch: number;
  #sweeping = false;
  /** Heartbeat streams open here per node: a stream lost while another one is open says nothing. */
  readonly #streams = new Map<string, number>();
  /** Nodes whose stream ended without a goodbye, oldest first: each is down at `at` unless heard since `lostAt`. */
  #lost: { nodeId: string; lostAt: number; at: number }[] = [];
  #lostTimer: NodeJS.Timeout | undefined;
  /** Stream-loss transitions waiting for the next batch write (one txn for a rack lost at once). */
  #lostWrites: Transition[] = [];
  #lostFlush: Promise<void> | undefined;
  readonly #stop = new AbortController();
  #sweeper: NodeJS.Timeout | undefined;
  #following: Promise<void> | undefined;
  /** Other controllers' nodes: they do not heartbeat; their presence is their lease. */
  readonly #controllers = new Set<string>();
  /** Heartbeats received here since the last `takeHeard`. */
  #heard = new Map<string, number>();
  /** The latest remote time applied per node, so a batch seen twice counts once. */
  readonly #remote = new Map<string, number>();
  /**
   * When each agent was last really heard from (a heartbeat here, or one another controller heard).
   * Unlike the tracker's time, which starts at "now" for every stored node so that a restart gives
   * them a full grace period, this one is never invented: a node not heard since this controller
   * started keeps its stored last-seen time, older than the controller's start, and `corral status`
   * and the demo tell it from a node that is up.
   */
  readonly #heardAt = new Map<string, number>();

  constructor(options: MembershipOptions) {
    this.#o = options;
    const { streamLostDownAfter, writeBatch, keepaliveTime, keepaliveTimeout, ...liveness } = {
      ...defaults.liveness,
      ...options.liveness,
    };
    this.#writeBatch = Math.max(1, Math.min(storeLimits.maxTxnOps, writeBatch));
    this.#tracker = new LivenessTracker({ clock: options.clock, ...liveness });
    this.#streamLostDownAfter = parseDuration(streamLostDownAfter, "liveness.streamLostDownAfter");
    // The controller's own node is alive for as long as anyone can ask.
    // Other controllers' nodes keep the time stored with them (their liveness is their lease).
    options.registry.takeLastSeenFrom((id) =>
      id === options.controllerNodeId
        ? options.clock.now()
        : this.#controllers.has(id)
          ? undefined
          : this.#heardAt.get(id),
    );
  }

  async start(): Promise<void> {
    const { nodes, revision } = await this.#o.registry.list();
    for (const node of nodes) {
      if (node.role === "controller") this.#controllers.add(node.id);
      if (this.#isAgent(node.id)) this.#tracker.track(node.id, node.status);
    }
    this.#following = this.#followForever(revision + 1);
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
    const now = this.#o.clock.now();
    this.#heard.set(nodeId, now);
    this.#heardAt.set(nodeId, now);
    if (transition !== undefined)
      await this.#apply(this.#o.registry, transition.nodeId, transition.to, transition.from);
    return this.nextInterval();
  }

  /** Last-seen times of the heartbeats received here since the previous call. */
  takeHeard(): Record<string, number> {
    const heard = Object.fromEntries(this.#heard);
    this.#heard = new Map();
    return heard;
  }

  /**
   * Another controller heard `nodeId` at `at`. The tracker counts it as a heartbeat now: a node is then
   * suspected at most one batching period late, never early. Only the leader writes the comeback of a
   * suspect node (the controller that heard it wrote it already, unless its view was stale).
   */
  async observeRemote(nodeId: string, at: number): Promise<void> {
    if (!this.#isAgent(nodeId) || this.#tracker.status(nodeId) === undefined) return;
    if (at <= (this.#remote.get(nodeId) ?? 0)) return;
    this.#remote.set(nodeId, at);
    if (at > (this.#heardAt.get(nodeId) ?? 0)) this.#heardAt.set(nodeId, at);
    if (at <= (this.#tracker.lastSeen(nodeId) ?? 0)) return;
    const transition = this.#tracker.heartbeat(nodeId);
    if (transition !== undefined && this.#o.isLeader?.() !== false)
      await this.#apply(this.#sweepRegistry, transition.nodeId, transition.to, transition.from);
  }

  /**
   * A controller that comes to lead takes the statuses in the registry as they are (another leader may
   * have written them), keeping the last-seen times it knows.
   */
  async resync(): Promise<void> {
    const { nodes } = await this.#o.registry.list();
    for (const node of nodes) if (this.#isAgent(node.id)) this.#tracker.track(node.id, node.status);
  }

  get #sweepRegistry(): NodeRegistry {
    return this.#o.sweepRegistry ?? this.#o.registry;
  }

  /** When the node was last really heard from (see `#heardAt`); undefined when not since this start. */
  lastSeen(nodeId: string): number | undefined {
    return this.#heardAt.get(nodeId);
  }

  /**
   * A heartbeat stream from `nodeId` opened here. The handle's `end` says how it ended: with a goodbye
   * (the agent closed its side, the stream reached its max age, this controller stops) or not (the
   * connection dropped: the process was killed, or keepalive found the peer silent). Only the controller
   * that held a stream learns of its end, so only it acts on it: a controller that starts or takes over
   * never marks a node down for a stream it did not see end.
   */
  openStream(nodeId: string): { end(goodbye: boolean): void } {
    this.#streams.set(nodeId, (this.#streams.get(nodeId) ?? 0) + 1);
    let ended = false;
    return {
      end: (goodbye) => {
        if (ended) return;
        ended = true;
        const open = (this.#streams.get(nodeId) ?? 1) - 1;
        if (open > 0) this.#streams.set(nodeId, open);
        else this.#streams.delete(nodeId);
        if (!goodbye && open === 0) this.#streamLost(nodeId);
      },
    };
  }

  #streamLost(nodeId: string): void {
    if (this.#stop.signal.aborted || !this.#isAgent(nodeId)) return;
    const status = this.#tracker.status(nodeId);
    // A node the sweep already suspects (a frozen agent stops heartbeating before keepalive gives up on
    // its connection) gets the short grace too, not the rest of downAfter.
    if (status !== "ready" && status !== "suspect") return;
    const transition = this.#tracker.suspectNow(nodeId);
    const now = this.#o.clock.now();
    this.#lost.push({ nodeId, lostAt: now, at: now + this.#streamLostDownAfter });
    if (transition !== undefined) this.#queueLostWrite(transition);
    this.#armLostTimer();
  }

  #armLostTimer(): void {
    const first = this.#lost[0];
    if (first === undefined || this.#lostTimer !== undefined || this.#stop.signal.aborted) return;
    this.#lostTimer = setTimeout(
      () => {
        this.#lostTimer = undefined;
        this.#downLost();
      },
      Math.max(0, first.at - this.#o.clock.now()),
    );
    this.#lostTimer.unref();
  }

  /** Lost nodes whose grace is over are down, unless heard (here or elsewhere) since their stream ended. */
  #downLost(): void {
    const now = this.#o.clock.now();
    const due = this.#lost.findIndex((entry) => entry.at > now);
    const expired = due === -1 ? this.#lost : this.#lost.slice(0, due);
    this.#lost = due === -1 ? [] : this.#lost.slice(due);
    for (const { nodeId, lostAt } of expired) {
      if ((this.#heardAt.get(nodeId) ?? 0) > lostAt || this.#streams.has(nodeId)) continue;
      const transition = this.#tracker.downNow(nodeId);
      if (transition !== undefined) this.#queueLostWrite(transition);
    }
    this.#armLostTimer();
  }

  /** Stream losses of one turn of the event loop are written together, guarded by the status they leave. */
  #queueLostWrite(transition: Transition): void {
    this.#lostWrites.push(transition);
    if (this.#lostFlush !== undefined) return;
    this.#lostFlush = new Promise<void>((resolve) => setImmediate(resolve)).then(async () => {
      while (this.#lostWrites.length > 0) {
        const writes = this.#lostWrites;
        this.#lostWrites = [];
        await this.#applyAll(this.#o.registry, writes, true);
      }
      this.#lostFlush = undefined;
    });
  }

  async #sweep(): Promise<void> {
    // A sweep at 10 000 nodes may outlast the interval: the next one waits for it instead of racing it.
    if (this.#sweeping || this.#o.isLeader?.() === false) return;
    this.#sweeping = true;
    try {
      await this.#applyAll(this.#sweepRegistry, this.#tracker.sweep(), false);
    } finally {
      this.#sweeping = false;
    }
  }

  /**
   * Writes transitions in batches, one store txn (and so one batch of events) each, and gives the event
   * loop a turn between batches: with SQLite every write is synchronous, and a mass outage written in one
   * go would keep the controller from answering anything, health probes included, until it is done.
   * `guarded` writes only over the status the transition leaves (stream losses race with comebacks
   * heard by other controllers); sweeps write as they always did.
   */
  async #applyAll(
    registry: NodeRegistry,
    transitions: readonly Transition[],
    guarded: boolean,
  ): Promise<void> {
    for (let i = 0; i < transitions.length; i += this.#writeBatch) {
      if (i > 0) await new Promise<void>((resolve) => setImmediate(resolve));
      if (!guarded && this.#o.isLeader?.() === false) return;
      const batch = transitions.slice(i, i + this.#writeBatch);
      try {
        const { written, skipped } = await registry.setStatuses(
          batch.map(({ nodeId, to, from }) =>
            guarded ? { id: nodeId, status: to, from } : { id: nodeId, status: to },
          ),
        );
        for (const nodeId of skipped) if (!guarded) this.#tracker.forget(nodeId);
        this.#logBatch(written.map((node) => ({ nodeId: node.id, name: node.name, to: node.status })));
      } catch (error) {
        this.#o.logger.warn({ err: error, nodes: batch.length }, "could not record liveness changes");
      }
    }
  }

  /** One line per node for a few, one per status for a mass transition. */
  #logBatch(changes: readonly { nodeId: string; name: string; to: string }[]): void {
    if (changes.length <= 8) {
      for (const { nodeId, name, to } of changes) this.#o.logger.info({ nodeId, name, to }, `node is ${to}`);
      return;
    }
    const byStatus = new Map<string, string[]>();
    for (const { name, to } of changes) byStatus.set(to, [...(byStatus.get(to) ?? []), name]);
    for (const [to, names] of byStatus)
      this.#o.logger.info({ to, count: names.length, nodes: names }, `${names.length} nodes are ${to}`);
  }

  async #apply(
    registry: NodeRegistry,
    nodeId: string,
    to: "ready" | "suspect" | "down",
    from: string,
  ): Promise<void> {
    try {
      await registry.setStatus(nodeId, to);
      this.#o.logger.info({ nodeId, from, to }, `node is ${to}`);
    } catch (error) {
      if (error instanceof CorralError && error.code === "NOT_FOUND") this.#tracker.forget(nodeId);
      else this.#o.logger.warn({ err: error, nodeId, to }, "could not record a liveness change");
    }
  }

  /**
   * Follows the feed for as long as the controller runs: a feed that fails (the store unreachable for
   * longer than its watch waits, history compacted) is taken up again from where it stopped, or from a
   * fresh listing, so a long store outage needs no restart.
   */
  async #followForever(fromRevision: number): Promise<void> {
    let from = fromRevision;
    while (!this.#stop.signal.aborted) {
      try {
        await this.#follow(from, (revision) => {
          from = revision + 1;
        });
      } catch (error) {
        if (this.#stop.signal.aborted) return;
        this.#o.logger.warn({ err: error }, "membership lost the event feed; following it again");
        if (error instanceof CorralError && error.code === "OUT_OF_RANGE") {
          const listed = await this.#o.registry.list().catch(() => undefined);
          if (listed === undefined) continue;
          for (const node of listed.nodes)
            if (this.#isAgent(node.id)) this.#tracker.track(node.id, node.status);
          from = listed.revision + 1;
        }
      }
      await sleep(1_000, undefined, { signal: this.#stop.signal }).catch(() => undefined);
    }
  }

  /** New nodes are tracked, removed or departed ones forgotten, whichever controller changed them. */
  async #follow(fromRevision: number, delivered: (revision: number) => void): Promise<void> {
    for await (const event of this.#o.feed.watch({
      fromRevision,
      kinds: ["node"],
      signal: this.#stop.signal,
    })) {
      delivered(event.revision);
      const node = event.node;
      if (node?.role === "controller" && event.type !== "node.deleted") this.#controllers.add(node.id);
      if (node === undefined || !this.#isAgent(node.id)) continue;
      if (event.type === "node.deleted") {
        this.#tracker.forget(node.id);
        this.#heardAt.delete(node.id);
      } else if (
        node.status === "ready" &&
        this.#tracker.status(node.id) !== undefined &&
        this.#tracker.status(node.id) !== "ready"
      ) {
        // Another controller heard it come back just now: as good as a heartbeat here.
        this.#tracker.heartbeat(node.id);
        this.#heardAt.set(node.id, this.#o.clock.now());
      }
      // Statuses written by any controller (e.g. the leader's sweep) are taken in.
      else this.#tracker.track(node.id, node.status);
    }
  }

  #isAgent(nodeId: string): boolean {
    return nodeId !== this.#o.controllerNodeId && !this.#controllers.has(nodeId);
  }

  async close(): Promise<void> {
    if (this.#sweeper !== undefined) clearInterval(this.#sweeper);
    if (this.#lostTimer !== undefined) clearTimeout(this.#lostTimer);
    this.#stop.abort();
    await this.#following;
    await this.#lostFlush;
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.close();
  }
}
