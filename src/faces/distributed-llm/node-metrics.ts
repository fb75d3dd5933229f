import { create } from "@bufbuild/protobuf";
import { CorralError } from "../../base/errors.ts";
import type { NodeRecord } from "../../core/nodes/node.ts";
import { type MetricValue, MetricValueSchema } from "../../gen/node_pb.ts";
import type { SystemMetrics } from "../../gen/picontroller_pb.ts";
import { unixSeconds } from "./messages.ts";

/** One GPU as read with a live reading. */
export interface GpuReading {
  readonly utilizationPercent: number;
  readonly memoryUsedMb: number;
  readonly memoryTotalMb: number;
}

/**
 * What is known of a node's load for one answer, and when it was measured (ms since the epoch).
 * "node": the node measured it for this answer (its NodeAgent's GetSystemMetrics, CPU over the time since
 * its previous reading, GPUs by nvidia-smi); "heartbeat": the node could not be asked, so its last
 * heartbeat's CPU and memory are all there is, and `why` says why.
 */
export type NodeReading =
  | {
      readonly source: "node";
      readonly at: number;
      readonly cpuUsage: number;
      readonly memoryUsedMb: number;
      readonly memoryTotalMb: number;
      readonly cpuCores: number;
      readonly gpus: readonly GpuReading[];
    }
  | {
      readonly source: "heartbeat";
      readonly at: number;
      readonly cpuUsage: number;
      readonly memoryUsedMb: number;
      readonly why: string;
    };

const mib = 1024 * 1024;

export function readingFromSystemMetrics(metrics: SystemMetrics, fallbackAt: number): NodeReading {
  const timestamp = Number(metrics.timestamp);
  return {
    source: "node",
    at: timestamp > 0 ? timestamp : fallbackAt,
    cpuUsage: metrics.cpuUsage,
    memoryUsedMb: Number(metrics.memoryUsedBytes) / mib,
    memoryTotalMb: Number(metrics.memoryTotalBytes) / mib,
    cpuCores: metrics.cpuCount,
    gpus: metrics.gpus.map((gpu) => ({
      utilizationPercent: gpu.utilizationPercent,
      memoryUsedMb: Number(gpu.memoryUsedBytes) / mib,
      memoryTotalMb: Number(gpu.memoryTotalBytes) / mib,
    })),
  };
}

type Missing = { missing: string };
type Figure = { value: number; source: "node" | "heartbeat" | "resources" } | Missing;

interface MetricSource {
  readonly unit: string;
  /** "reading": from the node's reading (or its registered resources where the reading has no such figure); "placement": the node's model layers as the controller holds them now. */
  readonly kind: "reading" | "placement";
  readonly read: (node: NodeRecord, reading: NodeReading | undefined) => Figure | number;
}

const noReading: Missing = {
  missing: "no load reported by this node yet, and the node could not be asked for one",
};

/** A figure of the live reading only (GPU load): a heartbeat does not carry it. */
function live(
  reading: NodeReading | undefined,
  read: (reading: Extract<NodeReading, { source: "node" }>) => number | Missing,
): Figure {
  if (reading === undefined) return noReading;
  if (reading.source !== "node") return { missing: `no live reading of the node: ${reading.why}` };
  const value = read(reading);
  return typeof value === "number" ? { value, source: "node" } : value;
}

const noGpus: Missing = { missing: "this node reports no GPUs (nvidia-smi found none)" };
const sum = (values: readonly number[]) => values.reduce((total, value) => total + value, 0);

/**
 * Every metric GetMetrics and StreamMetrics know, by name. Load and capacity figures are read from the
 * node for each answer (see NodeReading); layer figures are the controller's placement as it is now.
 */
export const nodeMetrics: Readonly<Record<string, MetricSource>> = {
  cpu_usage: {
    unit: "percent",
    kind: "reading",
    read: (_n, reading) =>
      reading === undefined ? noReading : { value: reading.cpuUsage, source: reading.source },
  },
  memory_used_mb: {
    unit: "MiB",
    kind: "reading",
    read: (_n, reading) =>
      reading === undefined ? noReading : { value: reading.memoryUsedMb, source: reading.source },
  },
  memory_usage: {
    unit: "percent",
    kind: "reading",
    read: (node, reading) => {
      if (reading === undefined) return noReading;
      const total = reading.source === "node" ? reading.memoryTotalMb : node.resources.memoryMb;
      if (total <= 0) return { missing: "the node reported no memory size" };
      return { value: Math.min(100, (reading.memoryUsedMb / total) * 100), source: reading.source };
    },
  },
  cpu_cores: {
    unit: "cores",
    kind: "reading",
    read: (node, reading) =>
      reading?.source === "node" && reading.cpuCores > 0
        ? { value: reading.cpuCores, source: "node" }
        : { value: node.resources.cpuCores, source: "resources" },
  },
  memory_mb: {
    unit: "MiB",
    kind: "reading",
    read: (node, reading) =>
      reading?.source === "node" && reading.memoryTotalMb > 0
        ? // Whole MiB, as NodeInfo.resources.memory_mb gives the same machine.
          { value: Math.floor(reading.memoryTotalMb), source: "node" }
        : { value: node.resources.memoryMb, source: "resources" },
  },
  gpus: {
    unit: "count",
    kind: "reading",
    read: (node, reading) =>
      reading?.source === "node"
        ? { value: reading.gpus.length, source: "node" }
        : { value: node.resources.gpus.length, source: "resources" },
  },
  gpu_memory_mb: {
    unit: "MiB",
    kind: "reading",
    read: (node, reading) =>
      reading?.source === "node"
        ? { value: sum(reading.gpus.map((gpu) => gpu.memoryTotalMb)), source: "node" }
        : { value: sum(node.resources.gpus.map((gpu) => gpu.memoryMb)), source: "resources" },
  },
  gpu_memory_used_mb: {
    unit: "MiB",
    kind: "reading",
    read: (_n, reading) =>
      live(reading, (r) => (r.gpus.length === 0 ? noGpus : sum(r.gpus.map((gpu) => gpu.memoryUsedMb)))),
  },
  gpu_memory_usage: {
    unit: "percent",
    kind: "reading",
    read: (_n, reading) =>
      live(reading, (r) => {
        const total = sum(r.gpus.map((gpu) => gpu.memoryTotalMb));
        if (r.gpus.length === 0) return noGpus;
        if (total <= 0) return { missing: "nvidia-smi reported no GPU memory size" };
        return Math.min(100, (sum(r.gpus.map((gpu) => gpu.memoryUsedMb)) / total) * 100);
      }),
  },
  gpu_utilization: {
    unit: "percent",
    kind: "reading",
    // The mean over the node's GPUs: one figure per node, as every other metric here.
    read: (_n, reading) =>
      live(reading, (r) =>
        r.gpus.length === 0 ? noGpus : sum(r.gpus.map((gpu) => gpu.utilizationPercent)) / r.gpus.length,
      ),
  },
  max_layers: { unit: "layers", kind: "placement", read: (node) => node.resources.maxLayers },
  used_layers: { unit: "layers", kind: "placement", read: (node) => node.resources.usedLayers },
  free_layers: {
    unit: "layers",
    kind: "placement",
    read: (node) => Math.max(0, node.resources.maxLayers - node.resources.usedLayers),
  },
  layer_utilization: {
    unit: "percent",
    kind: "placement",
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

/** Whether any of these names needs a reading of the node (layer figures alone do not). */
export function needsReading(names: readonly string[]): boolean {
  return names.some((name) => Object.hasOwn(nodeMetrics, name) && nodeMetrics[name]?.kind === "reading");
}

/**
 * One MetricValue per name. A name this API does not know is answered with `error` set (and value 0),
 * never dropped; a known figure the node has not reported yet likewise. Each value's `source` label
 * says where it comes from and its timestamp when it was measured.
 */
export function sampleMetrics(
  node: NodeRecord,
  reading: NodeReading | undefined,
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
    const figure = metric.read(node, reading);
    if (typeof figure === "number") {
      return create(MetricValueSchema, {
        name,
        unit: metric.unit,
        timestamp: unixSeconds(now),
        labels: { ...labels, source: "placement" },
        value: figure,
      });
    }
    if ("missing" in figure) {
      return create(MetricValueSchema, {
        name,
        unit: metric.unit,
        timestamp: unixSeconds(now),
        labels: { ...labels, source: reading?.source ?? "none" },
        error: figure.missing,
      });
    }
    const at = figure.source === "resources" || reading === undefined ? now : reading.at;
    return create(MetricValueSchema, {
      name,
      unit: metric.unit,
      timestamp: unixSeconds(at),
      labels: { ...labels, source: figure.source },
      value: figure.value,
    });
  });
  return { metrics, unknown };
}
