import type { NodeRecord } from "../nodes/node.ts";

/** Totals over the live members of the cluster (Distributed LLM's ClusterMetrics). */
export interface ClusterTotals {
  totalNodes: number;
  healthyNodes: number;
  totalMemoryMb: number;
  /**
   * Memory free now on the nodes that can take work (ready): each one's size less the memory in use in
   * its latest load reading. A ready node that has sent no load yet adds nothing (nothing is known free).
   */
  availableMemoryMb: number;
  totalGpus: number;
  totalLayers: number;
  allocatedLayers: number;
  /** allocatedLayers / totalLayers, 0 when there is no capacity. */
  utilization: number;
}

/** A node's memory in use now (MiB), from its latest load reading; undefined when it has sent none. */
export type MemoryInUse = (nodeId: string) => number | undefined;

export function clusterTotals(nodes: readonly NodeRecord[], memoryInUse: MemoryInUse): ClusterTotals {
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
    availableMemoryMb: sum(healthy, (node) => {
      const used = memoryInUse(node.id);
      return used === undefined ? 0 : Math.max(0, node.resources.memoryMb - used);
    }),
    totalGpus: sum(members, (node) => node.resources.gpus.length),
    totalLayers,
    allocatedLayers,
    utilization: totalLayers === 0 ? 0 : allocatedLayers / totalLayers,
  };
}
