import type { Clock } from "../../base/clock.ts";
import { parseDuration } from "../../base/duration.ts";
import { CorralError } from "../../base/errors.ts";
import { defaults } from "../../defaults.ts";
import type { NodeStatus } from "./node.ts";

/**
 * Failure detection, in memory and without timers: the caller feeds heartbeats in, calls `sweep()` on its
 * own schedule, and writes the status transitions it gets back to the registry (where they become events).
 * A heartbeat itself is never a store write; `snapshotLastSeen()` lets the caller persist last-seen times
 * now and then.
 *
 * Like Nomad, the heartbeat interval grows with the fleet so that the controller receives at most
 * `maxHeartbeatsPerSecond` heartbeats a second, and never goes below `minInterval`.
 */
export interface LivenessOptions {
  clock: Clock;
  /** Shortest heartbeat interval (milliseconds, or a duration such as "5s"). */
  minInterval?: number | string;
  /** Heartbeats per second the controller accepts at most; the interval grows past that. */
  maxHeartbeatsPerSecond?: number;
  /** A ready node silent for more than this many intervals becomes `suspect`. */
  suspectAfterMissed?: number;
  /** A suspect node still silent for more than this (milliseconds or duration) becomes `down`. */
  downAfter?: number | string;
  /** Fraction in [0, 1): `nextInterval` moves the interval by up to ±this much. */
  jitter?: number;
}

/** The statuses the tracker watches; `pending` and `left` nodes do not heartbeat and are not tracked. */
export type TrackedStatus = Extract<NodeStatus, "ready" | "suspect" | "down">;

export interface Transition {
  nodeId: string;
  from: TrackedStatus;
  to: TrackedStatus;
  /** Milliseconds since the epoch of the node's last heartbeat (or of when it was first tracked). */
  lastSeen: number;
}

interface Entry {
  status: TrackedStatus;
  lastSeen: number;
  /** When the entry took its current status: the start of the `downAfter` grace for a suspect node. */
  statusSince: number;
  /** The interval in force at the last heartbeat: what the agent was most likely told to wait. */
  intervalAtLastSeen: number;
}

function isTracked(status: NodeStatus): status is TrackedStatus {
  return status === "ready" || status === "suspect" || status === "down";
}

export class LivenessTracker {
  readonly #clock: Clock;
  readonly #minInterval: number;
  readonly #maxHeartbeatsPerSecond: number;
  readonly #suspectAfterMissed: number;
  readonly #downAfter: number;
  readonly #jitter: number;
  readonly #nodes = new Map<string, Entry>();

  constructor(options: LivenessOptions) {
    const d = defaults.liveness;
    this.#clock = options.clock;
    this.#minInterval = parseDuration(options.minInterval ?? d.minInterval, "liveness.minInterval");
    this.#downAfter = parseDuration(options.downAfter ?? d.downAfter, "liveness.downAfter");
    this.#maxHeartbeatsPerSecond = options.maxHeartbeatsPerSecond ?? d.maxHeartbeatsPerSecond;
    this.#suspectAfterMissed = options.suspectAfterMissed ?? d.suspectAfterMissed;
    this.#jitter = options.jitter ?? d.jitter;
    if (this.#minInterval <= 0)
      throw CorralError.invalidArgument("liveness.minInterval", "must be longer than 0");
    if (!(Number.isFinite(this.#maxHeartbeatsPerSecond) && this.#maxHeartbeatsPerSecond > 0))
      throw CorralError.invalidArgument("liveness.maxHeartbeatsPerSecond", "must be a number above 0");
    if (!(this.#jitter >= 0 && this.#jitter < 1))
      throw CorralError.invalidArgument("liveness.jitter", "must be a fraction in [0, 1)");
    // An agent may legitimately wait up to (1 + jitter) intervals; suspecting earlier would flag healthy nodes.
    if (!(Number.isFinite(this.#suspectAfterMissed) && this.#suspectAfterMissed > 1 + this.#jitter))
      throw CorralError.invalidArgument(
        "liveness.suspectAfterMissed",
        `must be more than 1 + jitter (${1 + this.#jitter}) intervals`,
      );
  }

  /** Nodes tracked now (ready, suspect and down); the node count to pass to `interval`/`nextInterval`. */
  get size(): number {
    return this.#nodes.size;
  }

  /** The heartbeat interval for a fleet of `nodeCount` nodes: max(minInterval, nodeCount / rate seconds). */
  interval(nodeCount: number): number {
    if (!(Number.isFinite(nodeCount) && nodeCount >= 0))
      throw CorralError.invalidArgument("nodeCount", `must be a non-negative number, got ${nodeCount}`);
    return Math.max(this.#minInterval, Math.ceil((nodeCount * 1000) / this.#maxHeartbeatsPerSecond));
  }

  /**
   * The interval to hand one agent: `interval(nodeCount)` moved by up to ±jitter, so that agents started
   * together drift apart. `random` returns a number in [0, 1), like Math.random.
   */
  nextInterval(nodeCount: number, random: () => number = Math.random): number {
    const base = this.interval(nodeCount);
    const r = Math.min(Math.max(random(), 0), 1);
    return Math.round(base * (1 + this.#jitter * (2 * r - 1)));
  }

  /**
   * Starts (or updates) watching a node in `status`. `pending` and `left` stop the watch, like `forget`.
   * A node seen for the first time gets its last-seen set to now: after a controller restart every node
   * therefore has a full suspect period to send its next heartbeat, instead of the whole fleet turning
   * suspect at the first sweep. A node already tracked keeps its last-seen time.
   */
  track(nodeId: string, status: NodeStatus): void {
    if (!isTracked(status)) {
      this.#nodes.delete(nodeId);
      return;
    }
    const now = this.#clock.now();
    const entry = this.#nodes.get(nodeId);
    if (entry === undefined) {
      this.#nodes.set(nodeId, {
        status,
        lastSeen: now,
        statusSince: now,
        intervalAtLastSeen: this.interval(this.#nodes.size + 1),
      });
    } else if (entry.status !== status) {
      entry.status = status;
      entry.statusSince = now;
    }
  }

  forget(nodeId: string): void {
    this.#nodes.delete(nodeId);
  }

  /** The tracker's view of a node's status; undefined when it is not tracked. */
  status(nodeId: string): TrackedStatus | undefined {
    return this.#nodes.get(nodeId)?.status;
  }

  /**
   * Records a heartbeat. A suspect or down node comes back: the transition to `ready` is returned for the
   * caller to write. A node that is not tracked (pending, left, unknown) is ignored and gives undefined.
   */
  heartbeat(nodeId: string): Transition | undefined {
    const entry = this.#nodes.get(nodeId);
    if (entry === undefined) return undefined;
    const now = this.#clock.now();
    entry.lastSeen = now;
    entry.intervalAtLastSeen = this.interval(this.#nodes.size);
    if (entry.status === "ready") return undefined;
    const transition: Transition = { nodeId, from: entry.status, to: "ready", lastSeen: now };
    entry.status = "ready";
    entry.statusSince = now;
    return transition;
  }

  lastSeen(nodeId: string): number | undefined {
    return this.#nodes.get(nodeId)?.lastSeen;
  }

  /**
   * The node's heartbeat stream ended without a goodbye: a ready node is suspect now, without waiting
   * for missed heartbeats. Gives the transition to write, or undefined when the node is not ready.
   */
  suspectNow(nodeId: string): Transition | undefined {
    return this.#move(nodeId, "ready", "suspect");
  }

  /** A suspect node is down now (its stream ended and it did not come back in time). */
  downNow(nodeId: string): Transition | undefined {
    return this.#move(nodeId, "suspect", "down");
  }

  #move(nodeId: string, from: TrackedStatus, to: TrackedStatus): Transition | undefined {
    const entry = this.#nodes.get(nodeId);
    if (entry?.status !== from) return undefined;
    entry.status = to;
    entry.statusSince = this.#clock.now();
    return { nodeId, from, to, lastSeen: entry.lastSeen };
  }

  /**
   * Moves silent nodes along, one step per sweep: a ready node silent for more than
   * `suspectAfterMissed × interval` becomes suspect; a node suspect for more than `downAfter` becomes down.
   * The interval is that of the current fleet size, or the one in force at the node's last heartbeat if
   * that was longer: when the fleet shrinks, agents still wait the longer interval they were told.
   */
  sweep(): Transition[] {
    const now = this.#clock.now();
    const current = this.interval(this.#nodes.size);
    const transitions: Transition[] = [];
    for (const [nodeId, entry] of this.#nodes) {
      if (entry.status === "ready") {
        const deadline = this.#suspectAfterMissed * Math.max(current, entry.intervalAtLastSeen);
        if (now - entry.lastSeen > deadline) {
          transitions.push({ nodeId, from: "ready", to: "suspect", lastSeen: entry.lastSeen });
          entry.status = "suspect";
          entry.statusSince = now;
        }
      } else if (entry.status === "suspect" && now - entry.statusSince > this.#downAfter) {
        transitions.push({ nodeId, from: "suspect", to: "down", lastSeen: entry.lastSeen });
        entry.status = "down";
        entry.statusSince = now;
      }
    }
    return transitions;
  }

  /** Last-seen time of every tracked node, a copy for the caller to persist now and then. */
  snapshotLastSeen(): Map<string, number> {
    const snapshot = new Map<string, number>();
    for (const [nodeId, entry] of this.#nodes) snapshot.set(nodeId, entry.lastSeen);
    return snapshot;
  }
}
