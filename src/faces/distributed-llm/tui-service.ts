import type { ServiceImpl } from "@connectrpc/connect";
import { clusterTotals } from "../../core/cluster-metrics.ts";
import { CorralError } from "../../core/errors.ts";
import { nodeStatuses } from "../../core/node.ts";
import type { TUIService } from "../../gen/node_pb.ts";
import type { FaceContext } from "../face-context.ts";
import { clusterMetrics, isMember, nodeInfo, resourcePredicate } from "./messages.ts";

export function distributedLlmTuiService({ registry }: FaceContext): Partial<ServiceImpl<typeof TUIService>> {
  return {
    async getNodeList(request) {
      const filter = request.filter;
      const statuses = new Set(filter?.statuses ?? []);
      for (const status of statuses) {
        if (!(nodeStatuses as readonly string[]).includes(status)) {
          throw CorralError.invalidArgument(
            "filter.statuses",
            `"${status}" is not one of ${nodeStatuses.join(", ")}`,
          );
        }
      }
      const accepts = resourcePredicate(filter?.resources, "filter.resources");
      const nameContains = filter?.nameContains.toLowerCase() ?? "";
      const { nodes } = await registry.list();
      const members = nodes.filter(isMember);
      const listed = members.filter(
        (node) =>
          (statuses.size === 0 || statuses.has(node.status)) &&
          accepts(node) &&
          node.name.toLowerCase().includes(nameContains) &&
          (!filter?.hasGpu || node.resources.gpus.length > 0),
      );
      return {
        nodes: listed.map(nodeInfo),
        ...(request.includeMetrics ? { clusterMetrics: clusterMetrics(clusterTotals(members)) } : {}),
      };
    },
  };
}
