import { Counter, collectDefaultMetrics, Gauge, Histogram, Registry } from "prom-client";

/** Where gauges read their values at scrape time, instead of being kept up to date on every change. */
export interface MetricSources {
  countNodesByStatus(): Promise<Record<string, number>>;
  storeRevision(): Promise<number>;
}

/** The controller's Prometheus metrics, served at /metrics on the web listener. */
export class ControllerMetrics {
  readonly #sources: MetricSources | undefined;
  readonly registry = new Registry();
  readonly rpcCalls = new Counter({
    name: "corral_rpc_calls_total",
    help: "gRPC calls handled, by method and status code",
    labelNames: ["method", "code"] as const,
    registers: [this.registry],
  });
  readonly rpcDuration = new Histogram({
    name: "corral_rpc_duration_seconds",
    help: "Time from the start of a call to its status (streams: their whole life)",
    labelNames: ["method"] as const,
    buckets: [0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 30, 300],
    registers: [this.registry],
  });

  constructor(sources?: MetricSources) {
    this.#sources = sources;
    const read = () => {
      if (this.#sources === undefined) throw new Error("no metric sources");
      return this.#sources;
    };
    if (sources !== undefined) {
      new Gauge({
        name: "corral_nodes",
        help: "Nodes known to the controller, by status",
        labelNames: ["status"] as const,
        registers: [this.registry],
        async collect() {
          for (const [status, count] of Object.entries(await read().countNodesByStatus()))
            this.set({ status }, count);
        },
      });
      new Gauge({
        name: "corral_store_revision",
        help: "The store's current revision",
        registers: [this.registry],
        async collect() {
          this.set(await read().storeRevision());
        },
      });
    }
    collectDefaultMetrics({ register: this.registry, prefix: "corral_" });
  }
}
