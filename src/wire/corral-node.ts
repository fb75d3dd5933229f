import { create } from "@bufbuild/protobuf";
import { timestampFromMs } from "@bufbuild/protobuf/wkt";
import { CorralError } from "../base/errors.ts";
import type { MetadataValue, NodeRecord, NodeService, NodeStatus, Resources } from "../core/nodes/node.ts";
import type { NodeFilter as CoreNodeFilter } from "../core/nodes/node-filter.ts";
import {
  type MetadataValue as MetadataValueMessage,
  MetadataValueSchema,
  type Node,
  type NodeFilter,
  NodeRole,
  NodeSchema,
  NodeService as NodeServiceEnum,
  NodeStatus as NodeStatusEnum,
  type Resources as ResourcesMessage,
} from "../gen/corral/v1/nodes_pb.ts";
import { metadataFromOneof, metadataOneof } from "./metadata-oneof.ts";

const statusToEnum: Record<NodeStatus, NodeStatusEnum> = {
  pending: NodeStatusEnum.PENDING,
  ready: NodeStatusEnum.READY,
  suspect: NodeStatusEnum.SUSPECT,
  down: NodeStatusEnum.DOWN,
  left: NodeStatusEnum.LEFT,
};
const statusFromEnum = new Map<NodeStatusEnum, NodeStatus>(
  Object.entries(statusToEnum).map(([name, value]) => [value, name as NodeStatus]),
);
const serviceToEnum: Record<NodeService, NodeServiceEnum> = {
  HUB_SERVER: NodeServiceEnum.HUB_SERVER,
  RESOURCES: NodeServiceEnum.RESOURCES,
  LOGGING: NodeServiceEnum.LOGGING,
  PIPELINES: NodeServiceEnum.PIPELINES,
};
const serviceFromEnum = new Map<NodeServiceEnum, NodeService>(
  Object.entries(serviceToEnum).map(([name, value]) => [value, name as NodeService]),
);

export function nodeToMessage(node: NodeRecord): Node {
  return create(NodeSchema, {
    id: node.id,
    name: node.name,
    role: node.role === "controller" ? NodeRole.CONTROLLER : NodeRole.AGENT,
    address: node.address,
    port: node.port,
    metadata: Object.fromEntries(
      Object.entries(node.metadata).map(([key, value]) => [key, metadataToMessage(value)]),
    ),
    services: node.services.map((service) => serviceToEnum[service]),
    resources: {
      cpuCores: node.resources.cpuCores,
      memoryMb: BigInt(node.resources.memoryMb),
      gpus: node.resources.gpus.map((gpu) => ({
        name: gpu.name,
        memoryMb: BigInt(gpu.memoryMb),
        uuid: gpu.uuid,
      })),
      maxLayers: node.resources.maxLayers,
      usedLayers: node.resources.usedLayers,
      disks: node.resources.disks.map((disk) => ({ mount: disk.mount, sizeBytes: BigInt(disk.sizeBytes) })),
    },
    labels: node.labels,
    status: statusToEnum[node.status],
    createdAt: timestampFromMs(node.createdAt),
    updatedAt: timestampFromMs(node.updatedAt),
    lastSeenAt: timestampFromMs(node.lastSeenAt),
    version: node.version,
  });
}

export function metadataToMessage(value: MetadataValue): MetadataValueMessage {
  return create(MetadataValueSchema, { value: metadataOneof(value) as MetadataValueMessage["value"] });
}

export function metadataFromMessage(message: MetadataValueMessage, field: string): MetadataValue {
  return metadataFromOneof(message.value, field);
}

export function filterFromMessage(filter: NodeFilter | undefined): CoreNodeFilter {
  if (filter === undefined) return {};
  const result: CoreNodeFilter = {};
  if (filter.statuses.length > 0) {
    result.statuses = filter.statuses.map((status, i) => {
      const name = statusFromEnum.get(status);
      if (name === undefined)
        throw CorralError.invalidArgument(`filter.statuses[${i}]`, `${status} is not a node status`);
      return name;
    });
  }
  if (filter.services.length > 0) {
    result.services = filter.services.map((service, i) => {
      const name = serviceFromEnum.get(service);
      if (name === undefined)
        throw CorralError.invalidArgument(`filter.services[${i}]`, `${service} is not a node service`);
      return name;
    });
  }
  const metadata = Object.entries(filter.metadata);
  if (metadata.length > 0) {
    result.metadata = Object.fromEntries(
      metadata.map(([key, value]) => [key, metadataFromMessage(value, `filter.metadata["${key}"]`)]),
    );
  }
  if (Object.keys(filter.labels).length > 0) result.labels = filter.labels;
  if (filter.nameContains !== "") result.nameContains = filter.nameContains;
  return result;
}

export function servicesFromMessage(services: readonly NodeServiceEnum[], field: string): NodeService[] {
  return services.map((service, i) => {
    const name = serviceFromEnum.get(service);
    if (name === undefined)
      throw CorralError.invalidArgument(`${field}[${i}]`, `${service} is not a node service`);
    return name;
  });
}

export function metadataMapFromMessage(
  metadata: Record<string, MetadataValueMessage>,
  field: string,
): Record<string, MetadataValue> {
  return Object.fromEntries(
    Object.entries(metadata).map(([key, value]) => [key, metadataFromMessage(value, `${field}["${key}"]`)]),
  );
}

export function resourcesFromMessage(resources: ResourcesMessage | undefined): Partial<Resources> {
  if (resources === undefined) return {};
  return {
    cpuCores: resources.cpuCores,
    memoryMb: Number(resources.memoryMb),
    gpus: resources.gpus.map((gpu) => ({ name: gpu.name, memoryMb: Number(gpu.memoryMb), uuid: gpu.uuid })),
    maxLayers: resources.maxLayers,
    usedLayers: resources.usedLayers,
    disks: resources.disks.map((disk) => ({ mount: disk.mount, sizeBytes: Number(disk.sizeBytes) })),
  };
}
