import { Gauge, type Registry } from "prom-client";
import type { MetricsHistory, MetricsPoint } from "../core/metrics/metrics-history.ts";

/** Node names by id, read at scrape time (a renamed node shows its new name). */
export type NodeNames = () => Promise<ReadonlyMap<string, string>>;

interface NodeGauge {
  readonly name: string;
  readonly help: string;
  readonly value: (point: MetricsPoint) => number | undefined;
}

const nodeGauges: readonly NodeGauge[] = [
  { name: "corral_node_cpu_percent", help: "CPU busy, all cores, 0-100", value: (p) => p.cpuPercent },
  { name: "corral_node_memory_used_bytes", help: "Memory in use", value: (p) => p.memoryUsedBytes },
  { name: "corral_node_memory_total_bytes", help: "Memory in all", value: (p) => p.memoryTotalBytes },
  {
    name: "corral_node_network_receive_bytes_per_second",
    help: "Bytes received per second, every interface but loopback",
    value: (p) => p.networkRxBytesPerSecond,
  },
  {
    name: "corral_node_network_transmit_bytes_per_second",
    help: "Bytes sent per second, every interface but loopback",
    value: (p) => p.networkTxBytesPerSecond,
  },
  {
    name: "corral_node_temperature_celsius",
    help: "Board temperature (absent without a sensor)",
    value: (p) => p.temperatureCelsius,
  },
  { name: "corral_node_load1", help: "1-minute load average", value: (p) => p.load1 },
  {
    name: "corral_node_metrics_sample_timestamp_seconds",
    help: "When the node took its latest sample (Unix seconds)",
    value: (p) => p.timeUnixMs / 1000,
  },
];

/**
 * Per-node gauges on the controller's /metrics, from the latest sample of each node's metrics history,
 * read at scrape time (nothing is kept up to date on every push). A removed node's series disappear.
 */
export function registerNodeMetricGauges(
  registry: Registry,
  history: MetricsHistory,
  names: NodeNames,
): void {
  // One read of the names serves every gauge of the same scrape.
  let current: { at: number; names: Promise<ReadonlyMap<string, string>> } | undefined;
  const namesNow = () => {
    const now = Date.now();
    if (current === undefined || now - current.at > 1_000) current = { at: now, names: names() };
    return current.names;
  };
  for (const spec of nodeGauges) {
    new Gauge({
      name: spec.name,
      help: spec.help,
      labelNames: ["node_id", "node"] as const,
      registers: [registry],
      async collect() {
        const byId = await namesNow();
        this.reset();
        for (const nodeId of history.nodeIds()) {
          const name = byId.get(nodeId);
          const latest = history.latest(nodeId);
          if (name === undefined || latest === undefined) continue;
          const value = spec.value(latest);
          if (value !== undefined) this.set({ node_id: nodeId, node: name }, value);
        }
      },
    });
  }
  new Gauge({
    name: "corral_node_gpu_utilization_percent",
    help: "GPU busy, 0-100",
    labelNames: ["node_id", "node", "gpu"] as const,
    registers: [registry],
    async collect() {
      const byId = await namesNow();
      this.reset();
      for (const nodeId of history.nodeIds()) {
        const name = byId.get(nodeId);
        const latest = history.latest(nodeId);
        if (name === undefined || latest === undefined) continue;
        for (const gpu of latest.gpus)
          this.set({ node_id: nodeId, node: name, gpu: gpu.uuid }, gpu.utilizationPercent);
      }
    },
  });
  new Gauge({
    name: "corral_metrics_history_bytes",
    help: "Memory held by the per-node metrics history rings",
    registers: [registry],
    collect() {
      this.set(history.bytes);
    },
  });
  new Gauge({
    name: "corral_metrics_history_nodes",
    help: "Nodes with metrics history",
    registers: [registry],
    collect() {
      this.set(history.nodeIds().length);
    },
  });
}
