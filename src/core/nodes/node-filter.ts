import { asArray, asObject, asOneOf, asString } from "../json-fields.ts";
import { metadataMatches } from "./metadata.ts";
import {
  type MetadataValue,
  type NodeRecord,
  type NodeService,
  type NodeStatus,
  nodeStatuses,
} from "./node.ts";
import { validateLabels, validateMetadata, validateServices } from "./node-validation.ts";

/** Every given part must hold; an empty list or record is no constraint (as in a protobuf request). */
export interface NodeFilter {
  statuses?: NodeStatus[];
  /** The node has each key with an equal value of the same kind. */
  metadata?: Record<string, MetadataValue>;
  /** The node offers every one of these. */
  services?: NodeService[];
  labels?: Record<string, string>;
  /** Case-insensitive substring of the name. */
  nameContains?: string;
}

/** Checks a filter a caller sent, so a malformed one fails loudly instead of matching nothing. */
export function validateNodeFilter(value: unknown): NodeFilter {
  const input = asObject(value ?? {}, "filter");
  const filter: NodeFilter = {};
  if (input.statuses !== undefined)
    filter.statuses = asArray(input.statuses, "filter.statuses").map((status, i) =>
      asOneOf(status, nodeStatuses, `filter.statuses[${i}]`),
    );
  if (input.metadata !== undefined) filter.metadata = validateMetadata(input.metadata, "filter.metadata");
  if (input.services !== undefined) filter.services = validateServices(input.services, "filter.services");
  if (input.labels !== undefined) filter.labels = validateLabels(input.labels, "filter.labels");
  if (input.nameContains !== undefined)
    filter.nameContains = asString(input.nameContains, "filter.nameContains");
  return filter;
}

export function matchesNodeFilter(node: NodeRecord, filter: NodeFilter): boolean {
  if (filter.statuses !== undefined && filter.statuses.length > 0 && !filter.statuses.includes(node.status))
    return false;
  if (filter.metadata !== undefined && !metadataMatches(node.metadata, filter.metadata)) return false;
  if (filter.services?.some((service) => !node.services.includes(service))) return false;
  if (filter.labels !== undefined) {
    for (const [key, value] of Object.entries(filter.labels)) {
      if (!Object.hasOwn(node.labels, key) || node.labels[key] !== value) return false;
    }
  }
  if (filter.nameContains !== undefined && filter.nameContains !== "")
    return node.name.toLowerCase().includes(filter.nameContains.toLowerCase());
  return true;
}
