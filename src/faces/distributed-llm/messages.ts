import { create } from "@bufbuild/protobuf";
import type { ClusterTotals } from "../../core/cluster-metrics.ts";
import { CorralError } from "../../core/errors.ts";
import type { NodeRecord } from "../../core/node.ts";
import {
  type ClusterMetrics,
  ClusterMetricsSchema,
  type NodeInfo,
  NodeInfoSchema,
  type ResourceFilter,
} from "../../gen/node_pb.ts";

/**
 * Distributed LLM has one identifier per node; corral shows the node's name there, because the
 * document's own examples address nodes as "agent-1", and the core resolves names and ids alike.
 */
export function nodeInfo(node: NodeRecord): NodeInfo {
  return create(NodeInfoSchema, {
    nodeId: node.name,
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
    lastSeen: BigInt(Math.floor(node.lastSeenAt / 1000)),
  });
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
