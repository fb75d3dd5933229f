import { type Timestamp, timestampMs } from "@bufbuild/protobuf/wkt";
import { metadataText } from "../client/format.ts";
import { JoinRequestState, type PendingJoin } from "../gen/corral/v1/join_pb.ts";
import { type Model, type ModelEventType, PlacementState } from "../gen/corral/v1/models_pb.ts";
import { type Node, NodeEventType, NodeRole, NodeStatus } from "../gen/corral/v1/nodes_pb.ts";
import type { ClusterMetrics, MetricValue, ModelInfo } from "../gen/node_pb.ts";
import type {
  ClusterTotalsView,
  LoadSample,
  ModelView,
  NodeEventKind,
  NodeStatusName,
  NodeView,
  PlacementName,
  RequestStateName,
  RequestView,
} from "./model.ts";

const ms = (at: Timestamp | undefined): number | undefined =>
  at === undefined ? undefined : timestampMs(at);

const statusNames: Readonly<Record<number, NodeStatusName>> = {
  [NodeStatus.PENDING]: "pending",
  [NodeStatus.READY]: "ready",
  [NodeStatus.SUSPECT]: "suspect",
  [NodeStatus.DOWN]: "down",
  [NodeStatus.LEFT]: "left",
};

export function nodeView(node: Node): NodeView {
  const resources = node.resources;
  return {
    id: node.id,
    name: node.name || node.id,
    role: node.role === NodeRole.CONTROLLER ? "controller" : node.role === NodeRole.AGENT ? "agent" : "",
    status: statusNames[node.status] ?? "unknown",
    address: node.port === 0 ? node.address : `${node.address}:${node.port}`,
    cpuCores: resources?.cpuCores ?? 0,
    memoryMb: Number(resources?.memoryMb ?? 0n),
    gpus: (resources?.gpus ?? []).map((gpu) => ({ name: gpu.name, memoryMb: Number(gpu.memoryMb) })),
    maxLayers: resources?.maxLayers ?? 0,
    usedLayers: resources?.usedLayers ?? 0,
    version: node.version,
    labels: { ...node.labels },
  };
}

/** The event kinds of WatchNodes and WatchModels (the same four). */
export function eventKind(type: NodeEventType | ModelEventType): NodeEventKind | undefined {
  switch (type) {
    case NodeEventType.SNAPSHOT:
      return "snapshot";
    case NodeEventType.SYNCED:
      return "synced";
    case NodeEventType.PUT:
      return "put";
    case NodeEventType.DELETED:
      return "deleted";
    default:
      return undefined;
  }
}

const placementNames: Readonly<Record<number, PlacementName>> = {
  [PlacementState.UNASSIGNED]: "unassigned",
  [PlacementState.PLACED]: "placed",
  [PlacementState.PARTIAL]: "partial",
  [PlacementState.UNPLACED]: "unplaced",
};

export function modelView(model: Model): ModelView {
  return {
    id: model.id,
    name: model.name,
    version: model.version,
    layerCount: model.layerCount,
    placedLayers: model.placedLayers,
    sizeBytes: Number(model.sizeBytes),
    state: placementNames[model.state] ?? "unknown",
    message: model.message,
    assignments: model.assignments.map((range) => ({
      node: range.nodeName || range.nodeId,
      start: range.start,
      count: range.count,
    })),
  };
}

/** Distributed LLM's ModelInfo says only which nodes hold layers (not which, nor a placement state). */
export function modelViewFromInfo(model: ModelInfo): ModelView {
  return {
    id: model.id || model.name,
    name: model.name,
    version: model.version,
    layerCount: model.layerCount,
    placedLayers: undefined,
    sizeBytes: Number(model.sizeBytes),
    state: model.nodeAssignments.length > 0 ? "assigned" : "unassigned",
    message: "",
    assignments: model.nodeAssignments.map((node) => ({ node, start: 0, count: 0 })),
  };
}

const requestStates: Readonly<Record<number, RequestStateName>> = {
  [JoinRequestState.PENDING]: "pending",
  [JoinRequestState.ACCEPTED]: "accepted",
  [JoinRequestState.REJECTED]: "rejected",
  [JoinRequestState.EXPIRED]: "expired",
};

export function requestView(request: PendingJoin): RequestView {
  return {
    id: request.id.toString(),
    name: request.name,
    nodeId: request.nodeId,
    sourceAddress: request.sourceAddress,
    address: request.address,
    fingerprint: request.keyFingerprint,
    metadata: metadataText(request.metadata),
    state: requestStates[request.state] ?? "unknown",
    createdAt: ms(request.createdAt),
    expiresAt: ms(request.expiresAt),
    decidedBy: request.decidedBy,
    reason: request.reason,
  };
}

export function totalsView(metrics: ClusterMetrics): ClusterTotalsView {
  return {
    totalNodes: metrics.totalNodes,
    healthyNodes: metrics.healthyNodes,
    totalMemoryMb: Number(metrics.totalMemoryMb),
    availableMemoryMb: Number(metrics.availableMemoryMb),
    totalGpus: metrics.totalGpus,
    totalLayers: metrics.totalLayers,
    allocatedLayers: metrics.allocatedLayers,
    utilization: metrics.clusterUtilization,
  };
}

/** The metrics GetMetrics is asked for, for the sparklines. */
export const loadMetricNames = ["cpu_usage", "memory_usage", "memory_used_mb"] as const;

/**
 * A GetMetrics answer as a load sample; undefined when the node reported no load at all (each figure
 * then carries an `error`). `fallbackAt` is used when the answer has no timestamps.
 */
export function loadSample(metrics: readonly MetricValue[], fallbackAt: number): LoadSample | undefined {
  const value = (name: string): number | undefined => {
    const metric = metrics.find((m) => m.name === name);
    return metric === undefined || metric.error !== "" || !Number.isFinite(metric.value)
      ? undefined
      : metric.value;
  };
  const cpuPercent = value("cpu_usage");
  const memoryPercent = value("memory_usage");
  const memoryUsedMb = value("memory_used_mb");
  if (cpuPercent === undefined && memoryPercent === undefined && memoryUsedMb === undefined) return undefined;
  const stamped = metrics.find((m) => m.name === "cpu_usage" && m.error === "") ?? metrics[0];
  const at = stamped !== undefined && stamped.timestamp > 0n ? Number(stamped.timestamp) * 1000 : fallbackAt;
  return { at, cpuPercent, memoryPercent, memoryUsedMb };
}
