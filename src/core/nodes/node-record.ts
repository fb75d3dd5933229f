import { asObject, asOneOf } from "../json-fields.ts";
import { parseEndpoint } from "./endpoint.ts";
import {
  emptyResources,
  type MetadataValue,
  type NodeRecord,
  type NodeRole,
  type NodeService,
  type NodeStatus,
  nodeRoles,
  nodeStatuses,
  type Resources,
} from "./node.ts";
import {
  validateLabels,
  validateMetadata,
  validateNodeId,
  validateNodeName,
  validateResources,
  validateServices,
  validateShortText,
} from "./node-validation.ts";

export interface RegisterNodeInput {
  /** A fresh UUID when absent. */
  id?: string;
  name: string;
  role?: NodeRole;
  /** "host:port", or a host with `port`; absent for a node that cannot be dialed. */
  address?: string;
  port?: number;
  metadata?: Record<string, MetadataValue>;
  services?: NodeService[];
  resources?: Partial<Resources>;
  labels?: Record<string, string>;
  status?: NodeStatus;
  version?: string;
}

/** Fields given replace the stored ones whole (metadata and labels included); absent fields stay. */
export interface NodePatch {
  name?: string;
  address?: string;
  port?: number;
  metadata?: Record<string, MetadataValue>;
  labels?: Record<string, string>;
  services?: NodeService[];
  resources?: Partial<Resources>;
  version?: string;
}

/** A new, checked record; the id is a fresh UUID unless the input names one. */
export function buildNodeRecord(input: RegisterNodeInput, now: number): NodeRecord {
  const o = asObject(input, "node");
  const endpoint = parseEndpoint(o.address, o.port);
  return {
    id: o.id === undefined ? crypto.randomUUID() : validateNodeId(o.id),
    name: validateNodeName(o.name),
    role: o.role === undefined ? "agent" : asOneOf(o.role, nodeRoles, "role"),
    address: endpoint.address,
    port: endpoint.port,
    metadata: validateMetadata(o.metadata ?? {}),
    services: validateServices(o.services ?? []),
    resources: validateResources(o.resources ?? emptyResources()),
    labels: validateLabels(o.labels ?? {}),
    status: o.status === undefined ? "pending" : asOneOf(o.status, nodeStatuses, "status"),
    createdAt: now,
    updatedAt: now,
    lastSeenAt: now,
    version: validateShortText(o.version ?? "", "version"),
  };
}

/** The record with the patch applied, every given field checked. */
export function applyNodePatch(current: NodeRecord, patch: NodePatch, now: number): NodeRecord {
  const p = asObject(patch, "patch");
  const next: NodeRecord = { ...current, updatedAt: now };
  if (p.name !== undefined) next.name = validateNodeName(p.name);
  if (p.address !== undefined || p.port !== undefined) {
    const endpoint =
      p.address === undefined
        ? parseEndpoint(current.address, p.port)
        : parseEndpoint(p.address, p.port, current.port === 0 ? undefined : current.port);
    next.address = endpoint.address;
    next.port = endpoint.port;
  }
  if (p.metadata !== undefined) next.metadata = validateMetadata(p.metadata);
  if (p.labels !== undefined) next.labels = validateLabels(p.labels);
  if (p.services !== undefined) next.services = validateServices(p.services);
  if (p.resources !== undefined) next.resources = validateResources(p.resources);
  if (p.version !== undefined) next.version = validateShortText(p.version, "version");
  return next;
}
