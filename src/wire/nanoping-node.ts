import { create } from "@bufbuild/protobuf";
import { CorralError } from "../base/errors.ts";
import type { MetadataValue, NodeRecord, NodeService } from "../core/nodes/node.ts";
import {
  type Node,
  type NodeMetadataItem,
  NodeMetadataItemSchema,
  NodeSchema,
  NodeService as NodeServiceEnum,
} from "../gen/hub_node_pb.ts";
import { metadataFromOneof, metadataOneof } from "./metadata-oneof.ts";

const serviceToEnum: Record<NodeService, NodeServiceEnum> = {
  HUB_SERVER: NodeServiceEnum.HUB_SERVER,
  RESOURCES: NodeServiceEnum.RESOURCES,
  LOGGING: NodeServiceEnum.LOGGING,
  PIPELINES: NodeServiceEnum.PIPELINES,
};

export function serviceFromEnum(value: NodeServiceEnum, field: string): NodeService {
  const name = NodeServiceEnum[value] as NodeService | undefined;
  if (name === undefined) throw CorralError.invalidArgument(field, `${value} is not a NanoPing node service`);
  return name;
}

/** NanoPing's Node: `online` means the hub can reach the node now. */
export function nanopingNode(node: NodeRecord): Node {
  return create(NodeSchema, {
    id: node.id,
    name: node.name,
    online: node.status === "ready",
    services: node.services.map((service) => serviceToEnum[service]),
    metadata: {
      items: Object.fromEntries(
        Object.entries(node.metadata).map(([key, value]) => [key, metadataItem(value)]),
      ),
    },
  });
}

export function metadataItem(value: MetadataValue): NodeMetadataItem {
  return create(NodeMetadataItemSchema, { value: metadataOneof(value) as NodeMetadataItem["value"] });
}

export function metadataFromItem(item: NodeMetadataItem, field: string): MetadataValue {
  return metadataFromOneof(item.value, field);
}
