import { CorralError, ErrorCode } from "../../base/errors.ts";
import {
  asArray,
  asBoolean,
  asNumber,
  asObject,
  asOneOf,
  asString,
  asStringRecord,
  type JsonObject,
} from "../json-fields.ts";
import {
  type MetadataValue,
  metadataKinds,
  type NodeRecord,
  nodeRoles,
  nodeServices,
  nodeStatuses,
  type Resources,
} from "./node.ts";

/**
 * JSON form of a NodeRecord as stored: bytes as base64, 64-bit integers as decimal strings, and the floats
 * JSON cannot hold (NaN, ±Infinity, -0) as strings, so every record round-trips exactly.
 */
export function nodeToJson(node: NodeRecord): JsonObject {
  const metadata: JsonObject = {};
  for (const [key, value] of Object.entries(node.metadata)) metadata[key] = metadataValueToJson(value);
  return { ...node, metadata };
}

export function encodeNode(node: NodeRecord): string {
  return JSON.stringify(nodeToJson(node));
}

/** Throws INVALID_ARGUMENT naming the first bad field. */
export function nodeFromJson(json: unknown): NodeRecord {
  const o = asObject(json, "node");
  const metadata: Record<string, MetadataValue> = {};
  for (const [key, value] of Object.entries(asObject(o.metadata, "node.metadata")))
    metadata[key] = metadataValueFromJson(value, `node.metadata.${key}`);
  return {
    id: asString(o.id, "node.id"),
    name: asString(o.name, "node.name"),
    role: asOneOf(o.role, nodeRoles, "node.role"),
    address: asString(o.address, "node.address"),
    port: asNumber(o.port, "node.port"),
    metadata,
    services: asArray(o.services, "node.services").map((s, i) =>
      asOneOf(s, nodeServices, `node.services[${i}]`),
    ),
    resources: resourcesFromJson(o.resources),
    labels: asStringRecord(o.labels, "node.labels"),
    status: asOneOf(o.status, nodeStatuses, "node.status"),
    createdAt: asNumber(o.createdAt, "node.createdAt"),
    updatedAt: asNumber(o.updatedAt, "node.updatedAt"),
    lastSeenAt: asNumber(o.lastSeenAt, "node.lastSeenAt"),
    version: asString(o.version, "node.version"),
  };
}

/** Decodes a node the core stored; a malformed one is corruption, so INTERNAL naming the key. */
export function decodeStoredNode(text: string, key: string): NodeRecord {
  try {
    return nodeFromJson(JSON.parse(text));
  } catch (error) {
    const reason = error instanceof Error ? error.message : String(error);
    throw new CorralError(ErrorCode.Internal, `stored node at ${key} is malformed: ${reason}`, {
      cause: error,
    });
  }
}

export function metadataValueToJson(item: MetadataValue): JsonObject {
  switch (item.kind) {
    case "bytes":
      return {
        kind: "bytes",
        value: Buffer.from(item.value.buffer, item.value.byteOffset, item.value.length).toString("base64"),
      };
    case "int":
    case "uint":
      return { kind: item.kind, value: item.value.toString() };
    case "double":
    case "float":
      return { kind: item.kind, value: jsonNumber(item.value) };
    default:
      return { kind: item.kind, value: item.value };
  }
}

/** JSON has no NaN, Infinity or -0; those travel as the strings that name them. */
function jsonNumber(value: number): number | string {
  if (Object.is(value, -0)) return "-0";
  return Number.isFinite(value) ? value : String(value);
}

const base64 = /^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$/;
const decimal = /^-?\d+$/;
const specialNumbers: Readonly<Record<string, number>> = {
  NaN: Number.NaN,
  Infinity: Number.POSITIVE_INFINITY,
  "-Infinity": Number.NEGATIVE_INFINITY,
  "-0": -0,
};

export function metadataValueFromJson(json: unknown, path: string): MetadataValue {
  const o = asObject(json, path);
  const kind = asOneOf(o.kind, metadataKinds, `${path}.kind`);
  const at = `${path}.value`;
  switch (kind) {
    case "string":
      return { kind, value: asString(o.value, at) };
    case "bool":
      return { kind, value: asBoolean(o.value, at) };
    case "bytes": {
      const text = asString(o.value, at);
      if (!base64.test(text)) throw CorralError.invalidArgument(at, "must be base64");
      return { kind, value: new Uint8Array(Buffer.from(text, "base64")) };
    }
    case "int":
    case "uint": {
      const text = asString(o.value, at);
      if (!decimal.test(text)) throw CorralError.invalidArgument(at, "must be a decimal integer string");
      return { kind, value: BigInt(text) };
    }
    case "double":
    case "float": {
      const special =
        typeof o.value === "string" && Object.hasOwn(specialNumbers, o.value)
          ? specialNumbers[o.value]
          : undefined;
      return { kind, value: special ?? asNumber(o.value, at) };
    }
  }
}

function resourcesFromJson(json: unknown): Resources {
  const o = asObject(json, "node.resources");
  return {
    cpuCores: asNumber(o.cpuCores, "node.resources.cpuCores"),
    memoryMb: asNumber(o.memoryMb, "node.resources.memoryMb"),
    gpus: asArray(o.gpus, "node.resources.gpus").map((gpu, i) => {
      const g = asObject(gpu, `node.resources.gpus[${i}]`);
      return {
        name: asString(g.name, `node.resources.gpus[${i}].name`),
        memoryMb: asNumber(g.memoryMb, `node.resources.gpus[${i}].memoryMb`),
        uuid: asString(g.uuid, `node.resources.gpus[${i}].uuid`),
      };
    }),
    maxLayers: asNumber(o.maxLayers, "node.resources.maxLayers"),
    usedLayers: asNumber(o.usedLayers, "node.resources.usedLayers"),
    disks: asArray(o.disks, "node.resources.disks").map((disk, i) => {
      const d = asObject(disk, `node.resources.disks[${i}]`);
      return {
        mount: asString(d.mount, `node.resources.disks[${i}].mount`),
        sizeBytes: asNumber(d.sizeBytes, `node.resources.disks[${i}].sizeBytes`),
      };
    }),
  };
}
