import { create } from "@bufbuild/protobuf";
import { CorralError } from "../../core/errors.ts";
import type { MetadataValue, NodeRecord, NodeService } from "../../core/node.ts";
import {
  type Node,
  type NodeMetadataItem,
  NodeMetadataItemSchema,
  NodeSchema,
  NodeService as NodeServiceEnum,
} from "../../gen/hub_node_pb.ts";

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
  const oneof = {
    string: { case: "stringValue", value: value.value },
    bytes: { case: "bytesValue", value: value.value },
    int: { case: "intValue", value: value.value },
    uint: { case: "uintValue", value: value.value },
    double: { case: "doubleValue", value: value.value },
    float: { case: "floatValue", value: value.value },
    bool: { case: "boolValue", value: value.value },
  }[value.kind];
  return create(NodeMetadataItemSchema, { value: oneof as NodeMetadataItem["value"] });
}

export function metadataFromItem(item: NodeMetadataItem, field: string): MetadataValue {
  const v = item.value;
  switch (v.case) {
    case "stringValue":
      return { kind: "string", value: v.value };
    case "bytesValue":
      return { kind: "bytes", value: v.value };
    case "intValue":
      return { kind: "int", value: v.value };
    case "uintValue":
      return { kind: "uint", value: v.value };
    case "doubleValue":
      return { kind: "double", value: v.value };
    case "floatValue":
      return { kind: "float", value: v.value };
    case "boolValue":
      return { kind: "bool", value: v.value };
    case undefined:
      throw CorralError.invalidArgument(
        field,
        "has no value; set one of string_value, bytes_value, int_value, …",
      );
  }
}
