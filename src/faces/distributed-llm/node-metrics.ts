import { create } from "@bufbuild/protobuf";
import { CorralError } from "../../core/errors.ts";
import type { NodeRecord } from "../../core/node.ts";
import { type MetricValue, MetricValueSchema } from "../../gen/node_pb.ts";
import { unixSeconds } from "./messages.ts";

/** The load a node last reported, and when (ms since the epoch). */
export interface LoadSample {
  readonly cpuUsage: number;
  readonly memoryUsedMb: number;
  readonly at: number;
}

interface MetricSource {
  readonly unit: string;
  /** Where the figure comes from: the node's last heartbeat, or its resources as registered. */
  readonly source: "heartbeat" | "resources";
  /** The value, or a reason why there is none. */
  readonly read: (node: NodeRecord, load: LoadSample | undefined) => number | { missing: string };
}

const noLoad = { missing: "no load reported by this node yet (it is sent with the agent's heartbeat)" };

/**
 * Every metric GetMetrics and StreamMetrics know, by name. Load figures come from the node's latest
 * heartbeat; the others from its resources and from placement (used_layers).
 */
export const nodeMetrics: Readonly<Record<string, MetricSource>> = {
  cpu_usage: { unit: "percent", source: "heartbeat", read: (_n, load) => load?.cpuUsage ?? noLoad },
  memory_used_mb: { unit: "MiB", source: "heartbeat", read: (_n, load) => load?.memoryUsedMb ?? noLoad },
  memory_usage: {
    unit: "percent",
    source: "heartbeat",
    read: (node, load) => {
      if (load === undefined) return noLoad;
      if (node.resources.memoryMb === 0) return { missing: "the node reported no memory size" };
      return Math.min(100, (load.memoryUsedMb / node.resources.memoryMb) * 100);
    },
  },
  cpu_cores: { unit: "cores", source: "resources", read: (node) => node.resources.cpuCores },
  memory_mb: { unit: "MiB", source: "resources", read: (node) => node.resources.memoryMb },
  gpus: { unit: "count", source: "resources", read: (node) => node.resources.gpus.length },
  gpu_memory_mb: {
    unit: "MiB",
    source: "resources",
    read: (node) => node.resources.gpus.reduce((sum, gpu) => sum + gpu.memoryMb, 0),
  },
  max_layers: { unit: "layers", source: "resources", read: (node) => node.resources.maxLayers },
  used_layers: { unit: "layers", source: "resources", read: (node) => node.resources.usedLayers },
  free_layers: {
    unit: "layers",
    source: "resources",
    read: (node) => Math.max(0, node.resources.maxLayers - node.resources.usedLayers),
  },
  layer_utilization: {
    unit: "percent",
    source: "resources",
    read: (node) =>
      node.resources.maxLayers === 0
        ? 0
        : Math.min(100, (node.resources.usedLayers / node.resources.maxLayers) * 100),
  },
};

export const metricNames: readonly string[] = Object.keys(nodeMetrics);
const maxRequested = 64;

/** The names asked for (all known ones when none), each once, in the order given. */
export function requestedMetrics(names: readonly string[], field = "metric_names"): string[] {
  if (names.length > maxRequested)
    throw CorralError.invalidArgument(field, `has ${names.length} names; the limit is ${maxRequested}`);
  if (names.length === 0) return [...metricNames];
  const seen = new Set<string>();
  for (const name of names) {
    const trimmed = name.trim();
    if (trimmed === "") throw CorralError.invalidArgument(field, "holds an empty name");
    if (trimmed.length > 128)
      throw CorralError.invalidArgument(field, "holds a name longer than 128 characters");
    seen.add(trimmed);
  }
  return [...seen];
}

/**
 * One MetricValue per name. A name this API does not know is answered with `error` set (and value 0),
 * never dropped; a known figure the node has not reported yet likewise.
 */
export function sampleMetrics(
  node: NodeRecord,
  load: LoadSample | undefined,
  names: readonly string[],
  now: number,
): { metrics: MetricValue[]; unknown: string[] } {
  const unknown: string[] = [];
  const metrics = names.map((name) => {
    const labels = { node_id: node.id };
    const metric = Object.hasOwn(nodeMetrics, name) ? nodeMetrics[name] : undefined;
    if (metric === undefined) {
      unknown.push(name);
      return create(MetricValueSchema, {
        name,
        timestamp: unixSeconds(now),
        labels,
        error: `unknown metric "${name}"; known: ${metricNames.join(", ")}`,
      });
    }
    const value = metric.read(node, load);
    const at = metric.source === "heartbeat" && load !== undefined ? load.at : now;
    return create(MetricValueSchema, {
      name,
      unit: metric.unit,
      timestamp: unixSeconds(at),
      labels: { ...labels, source: metric.source },
      ...(typeof value === "number" ? { value } : { error: value.missing }),
    });
  });
  return { metrics, unknown };
}
