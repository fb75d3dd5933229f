import type { ServiceImpl } from "@connectrpc/connect";
import type { NodeFilter } from "../../core/node-filter.ts";
import type { GetNodesRequest, HubServerService } from "../../gen/hub_server_pb.ts";
import type { FaceContext } from "../face-context.ts";
import { metadataFromItem, nanopingNode, serviceFromEnum } from "./node-message.ts";

/** NanoPing's filters: every metadata key with an equal value of the same oneof type, every service. */
export function hubNodeFilter(request: GetNodesRequest): NodeFilter {
  const filter: NodeFilter = { statuses: ["pending", "ready", "suspect", "down"] };
  const metadata = Object.entries(request.metadataFilters);
  if (metadata.length > 0) {
    filter.metadata = Object.fromEntries(
      metadata.map(([key, item]) => [key, metadataFromItem(item, `metadata_filters["${key}"]`)]),
    );
  }
  if (request.serviceFilters.length > 0) {
    filter.services = request.serviceFilters.map((service, i) =>
      serviceFromEnum(service, `service_filters[${i}]`),
    );
  }
  return filter;
}

export function hubServerService({ registry }: FaceContext): Partial<ServiceImpl<typeof HubServerService>> {
  return {
    async getNodes(request) {
      const { nodes } = await registry.list(hubNodeFilter(request));
      // The hub's own node first, as NanoPing lists it.
      const ordered = [
        ...nodes.filter((n) => n.role === "controller"),
        ...nodes.filter((n) => n.role !== "controller"),
      ];
      return { nodes: ordered.map(nanopingNode) };
    },
  };
}
