import type { ServiceImpl } from "@connectrpc/connect";
import { clusterTotals } from "../../core/cluster-metrics.ts";
import type { DiscoveryService } from "../../gen/node_pb.ts";
import type { FaceContext } from "../face-context.ts";
import { clusterMetrics, isMember, nodeInfo, resourcePredicate } from "./messages.ts";

export function distributedLlmDiscoveryService({
  registry,
  facts,
}: FaceContext): Partial<ServiceImpl<typeof DiscoveryService>> {
  return {
    async discoverNodes(request) {
      const accepts = resourcePredicate(request.filter, "filter");
      const known = new Set(request.knownNodes.map((id) => id.trim()));
      const { nodes } = await registry.list();
      const discovered = nodes
        .filter(isMember)
        .filter((node) => !known.has(node.id) && !known.has(node.name))
        .filter((node) => node.id !== request.requesterId && node.name !== request.requesterId)
        .filter(accepts)
        .map(nodeInfo);
      return {
        discoveredNodes: discovered,
        success: true,
        message: `${discovered.length} node(s) discovered`,
      };
    },

    async getClusterInfo() {
      const { nodes } = await registry.list();
      const members = nodes.filter(isMember);
      return {
        clusterId: facts.clusterId,
        nodes: members.map(nodeInfo),
        models: [],
        metrics: clusterMetrics(clusterTotals(members)),
      };
    },
  };
}
