import { type NodeStatus, nodeStatuses } from "./node.ts";

/** How many nodes are in each status; every status is present, 0 when no node is in it. */
export function countByStatus(nodes: readonly { readonly status: NodeStatus }[]): Record<NodeStatus, number> {
  const counts = Object.fromEntries(nodeStatuses.map((status) => [status, 0])) as Record<NodeStatus, number>;
  for (const node of nodes) counts[node.status] += 1;
  return counts;
}
