/** The node model: what the controller knows about every member of the fleet. */

export const nodeStatuses = ["pending", "ready", "suspect", "down", "left"] as const;
export type NodeStatus = (typeof nodeStatuses)[number];

export const nodeRoles = ["controller", "agent"] as const;
export type NodeRole = (typeof nodeRoles)[number];

/** NanoPing's NodeService enum, by name. */
export const nodeServices = ["HUB_SERVER", "RESOURCES", "LOGGING", "PIPELINES"] as const;
export type NodeService = (typeof nodeServices)[number];

/** NanoPing's NodeMetadataItem oneof: the kind is part of the value, so "1" (string) never equals 1 (int). */
export type MetadataValue =
  | { kind: "string"; value: string }
  | { kind: "bytes"; value: Uint8Array }
  | { kind: "int"; value: bigint }
  | { kind: "uint"; value: bigint }
  | { kind: "double"; value: number }
  | { kind: "float"; value: number }
  | { kind: "bool"; value: boolean };

export type MetadataKind = MetadataValue["kind"];
export const metadataKinds: readonly MetadataKind[] = [
  "string",
  "bytes",
  "int",
  "uint",
  "double",
  "float",
  "bool",
];

export interface Gpu {
  name: string;
  memoryMb: number;
  uuid: string;
}

export interface Disk {
  mount: string;
  sizeBytes: number;
}

/** Distributed LLM's ResourceInfo, plus disks. */
export interface Resources {
  cpuCores: number;
  memoryMb: number;
  gpus: Gpu[];
  maxLayers: number;
  usedLayers: number;
  disks: Disk[];
}

export interface NodeRecord {
  id: string;
  name: string;
  role: NodeRole;
  /** Host name or IP the controller dials; "" when the node is not reachable (a NanoPing node set by id). */
  address: string;
  /** 0 exactly when `address` is "". */
  port: number;
  metadata: Record<string, MetadataValue>;
  services: NodeService[];
  resources: Resources;
  labels: Record<string, string>;
  status: NodeStatus;
  /** Milliseconds since the Unix epoch, from the core's clock. */
  createdAt: number;
  updatedAt: number;
  lastSeenAt: number;
  /** The node's corral version as it reported it. */
  version: string;
}

export function emptyResources(): Resources {
  return { cpuCores: 0, memoryMb: 0, gpus: [], maxLayers: 0, usedLayers: 0, disks: [] };
}
