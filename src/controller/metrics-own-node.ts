import { setTimeout as sleep } from "node:timers/promises";
import type { MetricsHistory, MetricsPoint } from "../core/metrics/metrics-history.ts";
import type { NodeLoads } from "../core/nodes/node-load.ts";
import type { Logger } from "../observability/logger.ts";

export interface OwnNodeMetricsOptions {
  readonly history: MetricsHistory;
  readonly nodeId: string;
  readonly intervalMs: number;
  readonly sample: () => Promise<MetricsPoint>;
  /** Ids of the nodes that exist: history of any other node is dropped. */
  readonly nodeIds: () => Promise<ReadonlySet<string>>;
  readonly logger: Logger;
  /**
   * Where agents' heartbeat loads are kept: the controller's node reports its own there on every sample,
   * so cluster figures (available memory) count its machine like any other.
   */
  readonly loads?: NodeLoads;
}

/** How often the history drops removed nodes. */
const pruneEveryMs = 60_000;

/**
 * The controller is a node too: it samples itself into the history (and its load, as agents send theirs
 * with heartbeats) on the agents' interval, and drops
 * the history of nodes that were removed.
 */
export class OwnNodeMetrics implements AsyncDisposable {
  readonly #o: OwnNodeMetricsOptions;
  readonly #stop = new AbortController();
  readonly #loop: Promise<void>;

  constructor(options: OwnNodeMetricsOptions) {
    this.#o = options;
    this.#loop = this.#run();
  }

  async #run(): Promise<void> {
    const signal = this.#stop.signal;
    let lastPrune = Date.now();
    while (!signal.aborted) {
      try {
        const point = await this.#o.sample();
        this.#o.history.record(this.#o.nodeId, [point]);
        this.#o.loads?.record(this.#o.nodeId, {
          cpuUsage: point.cpuPercent,
          memoryUsedMb: Math.round(point.memoryUsedBytes / (1024 * 1024)),
          at: point.timeUnixMs,
        });
        if (Date.now() - lastPrune >= pruneEveryMs) {
          lastPrune = Date.now();
          this.#o.history.retain(await this.#o.nodeIds());
        }
      } catch (error) {
        if (!signal.aborted) this.#o.logger.warn({ err: error }, "could not sample the controller's node");
      }
      await sleep(this.#o.intervalMs, undefined, { signal, ref: false }).catch(() => undefined);
    }
  }

  async close(): Promise<void> {
    this.#stop.abort();
    await this.#loop;
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.close();
  }
}
