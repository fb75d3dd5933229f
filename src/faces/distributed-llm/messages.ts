import { create } from "@bufbuild/protobuf";
import { CorralError } from "../../base/errors.ts";
import type { ClusterTotals, MemoryInUse } from "../../core/metrics/cluster-metrics.ts";
import type { ModelRecord } from "../../core/models/model.ts";
import type { NodeRecord } from "../../core/nodes/node.ts";
import type { NodeLoads } from "../../core/nodes/node-load.ts";
import { defaults } from "../../defaults.ts";
import {
  type ClusterMetrics,
  ClusterMetricsSchema,
  type ModelInfo,
  ModelInfoSchema,
  type NodeInfo,
  NodeInfoSchema,
  type ResourceFilter,
} from "../../gen/node_pb.ts";

/**
 * Distributed LLM has one identifier per node: corral shows the node's id there, which stays the same for
 * the node's whole life (a rename through NanoPing's setNode does not change it). Every method that takes
 * a `node_id` also takes the node's name, as the document's own examples address nodes ("agent-1").
 */
export function nodeInfo(node: NodeRecord): NodeInfo {
  return create(NodeInfoSchema, {
    nodeId: node.id,
    address: node.address,
    port: node.port,
    resources: {
      cpuCores: BigInt(node.resources.cpuCores),
      memoryMb: BigInt(node.resources.memoryMb),
      gpus: node.resources.gpus.map((gpu) => ({
        name: gpu.name,
        memoryMb: BigInt(gpu.memoryMb),
        uuid: gpu.uuid,
      })),
      maxLayers: node.resources.maxLayers,
      usedLayers: node.resources.usedLayers,
    },
    status: node.status,
    lastSeen: unixSeconds(node.lastSeenAt),
  });
}

/** Memory in use by node, from the loads nodes report (agents with heartbeats, the controller itself). */
export function memoryInUse(loads: NodeLoads): MemoryInUse {
  return (nodeId) => loads.latest(nodeId)?.memoryUsedMb;
}

export function clusterMetrics(totals: ClusterTotals): ClusterMetrics {
  return create(ClusterMetricsSchema, {
    totalNodes: totals.totalNodes,
    healthyNodes: totals.healthyNodes,
    totalMemoryMb: BigInt(totals.totalMemoryMb),
    availableMemoryMb: BigInt(totals.availableMemoryMb),
    totalGpus: totals.totalGpus,
    totalLayers: totals.totalLayers,
    allocatedLayers: totals.allocatedLayers,
    clusterUtilization: totals.utilization,
  });
}

/** A node passes when it meets every minimum that is set; negative minimums are a caller's mistake. */
export function resourcePredicate(
  filter: ResourceFilter | undefined,
  field: string,
): (node: NodeRecord) => boolean {
  if (filter === undefined) return () => true;
  const minimums = {
    min_cpu_cores: Number(filter.minCpuCores),
    min_memory_mb: Number(filter.minMemoryMb),
    min_gpus: filter.minGpus,
    min_free_layers: filter.minFreeLayers,
    min_gpu_memory_mb: Number(filter.minGpuMemoryMb),
  };
  for (const [name, value] of Object.entries(minimums)) {
    if (value < 0)
      throw CorralError.invalidArgument(`${field}.${name}`, `must not be negative, got ${value}`);
  }
  return (node) =>
    node.resources.cpuCores >= minimums.min_cpu_cores &&
    node.resources.memoryMb >= minimums.min_memory_mb &&
    node.resources.gpus.length >= minimums.min_gpus &&
    node.resources.maxLayers - node.resources.usedLayers >= minimums.min_free_layers &&
    (minimums.min_gpu_memory_mb === 0 ||
      node.resources.gpus.some((gpu) => gpu.memoryMb >= minimums.min_gpu_memory_mb));
}

/** Live members: a node that left is history, not a peer. */
export function isMember(node: NodeRecord): boolean {
  return node.status !== "left";
}

/**
 * ModelInfo: `node_assignments` names the nodes that hold the model's layers, in layer order (one entry
 * per contiguous range), by the same identifier NodeInfo.node_id uses (the node's id).
 */
export function modelInfo(model: ModelRecord): ModelInfo {
  return create(ModelInfoSchema, {
    id: model.id,
    name: model.name,
    version: model.version,
    layerCount: model.layerCount,
    filePath: model.filePath,
    sizeBytes: BigInt(model.sizeBytes),
    nodeAssignments: model.assignments.map((range) => range.nodeId),
  });
}

/** A lookup from node id to the node's name, for text meant for people (the id itself when unknown). */
export function namesOf(nodes: readonly NodeRecord[]): (nodeId: string) => string {
  const byId = new Map(nodes.map((node) => [node.id, node.name]));
  return (nodeId) => byId.get(nodeId) ?? nodeId;
}

/** `interval_seconds` of the streams: 0 means the default; below the minimum or above the maximum is refused. */
export function streamIntervalMs(seconds: number, field = "interval_seconds"): number {
  const { defaultIntervalSeconds, minIntervalSeconds, maxIntervalSeconds } = defaults.distributedLlm;
  if (seconds === 0) return defaultIntervalSeconds * 1000;
  if (seconds < minIntervalSeconds || seconds > maxIntervalSeconds) {
    throw CorralError.invalidArgument(
      field,
      `must be ${minIntervalSeconds} to ${maxIntervalSeconds} seconds (0 for the default, ${defaultIntervalSeconds}), got ${seconds}`,
    );
  }
  return seconds * 1000;
}

/** Unix seconds, the unit of NodeInfo.last_seen and of every timestamp this API sends. */
export function unixSeconds(ms: number): bigint {
  return BigInt(Math.floor(ms / 1000));
}
