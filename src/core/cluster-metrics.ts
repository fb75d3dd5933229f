import type { NodeRecord } from "./node.ts";

/** Totals over the live members of the cluster (Distributed LLM's ClusterMetrics). */
export interface ClusterTotals {
  totalNodes: number;
  healthyNodes: number;
  totalMemoryMb: number;
  /** Memory of the nodes that can take work now (ready). */
  availableMemoryMb: number;
  totalGpus: number;
  totalLayers: number;
  allocatedLayers: number;
  /** allocatedLayers / totalLayers, 0 when there is no capacity. */
  utilization: number;
}

export function clusterTotals(nodes: readonly NodeRecord[]): ClusterTotals {
  const members = nodes.filter((node) => node.status !== "left");
  const healthy = members.filter((node) => node.status === "ready");
  const sum = (list: readonly NodeRecord[], pick: (node: NodeRecord) => number) =>
    list.reduce((total, node) => total + pick(node), 0);
  const totalLayers = sum(members, (node) => node.resources.maxLayers);
  const allocatedLayers = sum(members, (node) => node.resources.usedLayers);
  return {
    totalNodes: members.length,
    healthyNodes: healthy.length,
    totalMemoryMb: sum(members, (node) => node.resources.memoryMb),
    availableMemoryMb: sum(healthy, (node) => node.resources.memoryMb),
    totalGpus: sum(members, (node) => node.resources.gpus.length),
    totalLayers,
    allocatedLayers,
    utilization: totalLayers === 0 ? 0 : allocatedLayers / totalLayers,
  };
}
