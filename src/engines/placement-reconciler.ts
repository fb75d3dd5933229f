import { parseDuration } from "../base/duration.ts";
import type { ClusterEvent } from "../core/events/cluster-event.ts";
import type { EventFeed } from "../core/events/event-feed.ts";
import type { ModelRegistry, PlacementOutcome } from "../core/models/model-registry.ts";
import type { NodeRecord } from "../core/nodes/node.ts";
import type { NodeLoads } from "../core/nodes/node-load.ts";
import { defaults } from "../defaults.ts";
import type { Logger } from "../observability/logger.ts";

export interface PlacementReconcilerOptions {
  readonly models: ModelRegistry;
  readonly feed: EventFeed;
  readonly logger: Logger;
  /** Load figures of removed nodes are dropped here. */
  readonly loads?: NodeLoads;
  /** Wait after a failed pass before the next try (doubles up to `maxRetryMs`). */
  readonly retryMs?: number;
  readonly maxRetryMs?: number;
  /** Told after every pass that changed placement (tests, metrics). */
  readonly onPass?: (outcome: PlacementOutcome) => void;
  /** Passes run only while this says so (the leader); schedule() again once it does. Default: always. */
  readonly isLeader?: () => boolean;
  /** How long a pass asked for by an event waits for more events (a duration; default 50ms). */
  readonly coalesce?: string;
}

/**
 * Keeps model layers placed as the cluster changes: it follows the event feed and runs a placement pass
 * when something that placement depends on changed — a node's status, its layer capacity or its used
 * layers (a writer that lowered them below what is placed), a node removed, a model added, assigned or
 * removed, a node drained. Passes run one at a time; events arriving during a pass make one more pass.
 * Its own writes come back through the feed and are skipped.
 *
 * One controller runs it (the only one today; with several controllers, the leader). Each pass is a
 * compare-and-swap txn, so a second runner would cost retries, not correctness.
 */
export class PlacementReconciler implements AsyncDisposable {
  readonly #o: PlacementReconcilerOptions;
  readonly #stop = new AbortController();
  #following: Promise<void> | undefined;
  #running: Promise<void> | undefined;
  #again = false;
  #retryTimer: NodeJS.Timeout | undefined;
  #retryMs: number;
  #passes = 0;
  readonly #coalesceMs: number;
  #coalescing: { timer: NodeJS.Timeout; done: Promise<void>; fire: () => void } | undefined;
  /**
   * The models that exist, kept from the feed: with none, no node event can change placement, and a
   * mass transition costs no pass at all. Undefined until first listed (then nothing is skipped).
   */
  #models: Set<string> | undefined;

  constructor(options: PlacementReconcilerOptions) {
    this.#o = options;
    this.#retryMs = options.retryMs ?? defaults.placement.retryMs;
    this.#coalesceMs = parseDuration(options.coalesce ?? defaults.placement.coalesce, "placement.coalesce");
  }

  /** Passes run so far (including those that changed nothing). */
  get passes(): number {
    return this.#passes;
  }

  /**
   * Follows the feed from now on, and runs one pass at once for whatever happened while no controller
   * watched (a pass is idempotent, so an event seen both ways costs one pass that changes nothing).
   */
  start(): void {
    this.#following = this.#followAlways();
    this.schedule();
  }

  /** Resolves once no pass is running or asked for (tests; shutdown). */
  async settled(): Promise<void> {
    while (this.#running !== undefined || this.#coalescing !== undefined) {
      await this.#coalescing?.done;
      await this.#running;
    }
  }

  /** Whether a node or drain event may matter: not while no model exists. */
  get #modelsExist(): boolean {
    return this.#models === undefined || this.#models.size > 0;
  }

  /** A pass for an event: after `coalesce`, so that the rest of its burst rides on the same pass. */
  #scheduleSoon(): void {
    if (this.#coalescing !== undefined || this.#stop.signal.aborted) return;
    let fire: () => void = () => undefined;
    const done = new Promise<void>((resolve) => {
      fire = () => {
        clearTimeout(timer);
        this.#coalescing = undefined;
        this.schedule();
        resolve();
      };
    });
    const timer = setTimeout(() => fire(), this.#coalesceMs);
    timer.unref();
    this.#coalescing = { timer, done, fire };
  }

  /** Asks for a pass soon (coalesced with one already asked for). */
  schedule(): void {
    if (this.#stop.signal.aborted || this.#o.isLeader?.() === false) return;
    if (this.#running !== undefined) {
      this.#again = true;
      return;
    }
    this.#running = this.#run().finally(() => {
      this.#running = undefined;
    });
  }

  async #run(): Promise<void> {
    do {
      this.#again = false;
      if (this.#stop.signal.aborted || this.#o.isLeader?.() === false) return;
      try {
        this.#passes++;
        const outcome = await this.#o.models.reconcile();
        this.#retryMs = this.#o.retryMs ?? defaults.placement.retryMs;
        if (outcome.changed) {
          const { moved, added, dropped } = outcome.change;
          this.#o.logger.info(
            { revision: outcome.revision, moved, added, dropped },
            "model layers re-placed",
          );
          this.#o.onPass?.(outcome);
        }
      } catch (error) {
        if (this.#stop.signal.aborted) return;
        this.#o.logger.warn({ err: error }, "a placement pass failed; retrying");
        this.#retry();
        return;
      }
    } while (this.#again);
  }

  #retry(): void {
    if (this.#retryTimer !== undefined || this.#stop.signal.aborted) return;
    const wait = this.#retryMs;
    this.#retryMs = Math.min(wait * 2, this.#o.maxRetryMs ?? defaults.placement.maxRetryMs);
    this.#retryTimer = setTimeout(() => {
      this.#retryTimer = undefined;
      this.schedule();
    }, wait);
    this.#retryTimer.unref();
  }

  /** Follows the feed; if the watch fails (fell behind, store hiccup), a full pass covers the gap. */
  async #followAlways(): Promise<void> {
    while (!this.#stop.signal.aborted) {
      try {
        await this.#follow();
      } catch (error) {
        if (this.#stop.signal.aborted) return;
        this.#o.logger.warn({ err: error }, "placement lost the event feed; following it again");
      }
      if (this.#stop.signal.aborted) return;
      this.schedule();
      await sleep(this.#o.retryMs ?? defaults.placement.retryMs, this.#stop.signal);
    }
  }

  async #follow(): Promise<void> {
    // Listed first, then followed from just after that listing: no model can slip between the two.
    const listed = await this.#o.models.list();
    this.#models = new Set(listed.models.map((model) => model.id));
    for await (const event of this.#o.feed.watch({
      fromRevision: listed.revision + 1,
      kinds: ["node", "model", "node-drain"],
      signal: this.#stop.signal,
    })) {
      if (event.kind === "node" && event.type === "node.deleted" && event.node !== undefined)
        this.#o.loads?.forget(event.node.id);
      if (event.kind === "model" && event.model !== undefined) {
        if (event.type === "model.deleted") this.#models.delete(event.model.id);
        else this.#models.add(event.model.id);
      }
      if (this.#o.models.wrote(event.revision)) continue;
      if (event.kind !== "model" && !this.#modelsExist) continue;
      if (matters(event)) this.#scheduleSoon();
    }
  }

  async close(): Promise<void> {
    this.#stop.abort();
    if (this.#coalescing !== undefined) {
      clearTimeout(this.#coalescing.timer);
      this.#coalescing.fire();
    }
    if (this.#retryTimer !== undefined) clearTimeout(this.#retryTimer);
    this.#retryTimer = undefined;
    await this.#following;
    await this.#running;
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.close();
  }
}

/** Whether placement could come out differently after this event. */
export function matters(event: ClusterEvent): boolean {
  switch (event.kind) {
    case "node": {
      if (event.type === "node.deleted") return true;
      const node = event.node;
      const before = event.previous;
      if (node === undefined) return false;
      if (before === undefined) return node.status === "ready" && node.resources.maxLayers > 0;
      return placementFacts(node) !== placementFacts(before);
    }
    case "model": {
      if (event.type === "model.deleted") return true;
      const model = event.model;
      const before = event.previous;
      return model !== undefined && (before === undefined || model.assigned !== before.assigned);
    }
    case "node-drain":
      return true;
    default:
      return false;
  }
}

function placementFacts(node: NodeRecord): string {
  return `${node.status}|${node.resources.maxLayers}|${node.resources.usedLayers}|${node.resources.gpus.length}`;
}

/** Resolves after `ms`, or at once when `signal` aborts; leaves no timer or listener behind. */
function sleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal.aborted) return resolve();
    const done = () => {
      clearTimeout(timer);
      signal.removeEventListener("abort", done);
      resolve();
    };
    const timer = setTimeout(done, ms);
    signal.addEventListener("abort", done, { once: true });
  });
}
