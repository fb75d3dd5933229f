import { CorralError } from "../../base/errors.ts";
import { asArray, asNumber, asObject, asOneOf, asString } from "../json-fields.ts";
import {
  type Disk,
  emptyResources,
  type Gpu,
  type MetadataValue,
  metadataKinds,
  type NodeService,
  nodeServices,
  type Resources,
} from "./node.ts";
import { nodeLimits as limits } from "./node-limits.ts";

/**
 * Checks of what callers (faces, agents) hand the registry. Inputs are `unknown` on purpose: a face may pass
 * whatever a client sent. Each failure is INVALID_ARGUMENT naming the field.
 */

const controlChar = /\p{Cc}/u;
const loneSurrogate = /[\uD800-\uDFFF]/u;
// Keys that would set an object's prototype instead of becoming an entry.
const reservedKeys = new Set(["__proto__", "constructor", "prototype"]);

/** Text a key can hold: no control characters, no unpaired surrogates, at most `max` characters. */
function checkText(
  value: unknown,
  field: string,
  max: number,
  options: { allowEmpty?: boolean } = {},
): string {
  const text = asString(value, field);
  if (text === "" && options.allowEmpty !== true) throw CorralError.invalidArgument(field, "is empty");
  if (controlChar.test(text) || loneSurrogate.test(text))
    throw CorralError.invalidArgument(field, "holds control characters or unpaired surrogates");
  const length = [...text].length;
  if (length > max) throw CorralError.invalidArgument(field, `is ${length} characters; the limit is ${max}`);
  return text;
}

/** True when `text` could be a stored id or name, so a lookup of it is worth a store read. */
export function isPlausibleIdOrName(text: string): boolean {
  return (
    text !== "" &&
    text.length <= 4 * Math.max(limits.maxIdLength, limits.maxNameLength) &&
    !loneSurrogate.test(text)
  );
}

export function validateNodeId(value: unknown, field = "id"): string {
  const id = checkText(value, field, limits.maxIdLength);
  if (/\s/u.test(id)) throw CorralError.invalidArgument(field, "must not contain whitespace");
  return id;
}

export function validateNodeName(value: unknown, field = "name"): string {
  const name = checkText(value, field, limits.maxNameLength);
  if (name.trim() !== name) throw CorralError.invalidArgument(field, "must not start or end with whitespace");
  return name;
}

export function validateShortText(value: unknown, field: string): string {
  return checkText(value, field, limits.maxTextLength, { allowEmpty: true });
}

const int64 = { min: -(2n ** 63n), max: 2n ** 63n - 1n };
const uint64 = { min: 0n, max: 2n ** 64n - 1n };

export function validateMetadataValue(value: unknown, field: string): MetadataValue {
  const item = asObject(value, field);
  const kind = asOneOf(item.kind, metadataKinds, `${field}.kind`);
  const raw = item.value;
  switch (kind) {
    case "string": {
      const text = asString(raw, field);
      checkSize(Buffer.byteLength(text, "utf8"), field);
      return { kind, value: text };
    }
    case "bytes":
      if (!(raw instanceof Uint8Array))
        throw CorralError.invalidArgument(field, "must be bytes (a Uint8Array)");
      checkSize(raw.length, field);
      // A copy: the caller's buffer may be reused after the call.
      return { kind, value: new Uint8Array(raw) };
    case "int":
    case "uint": {
      const range = kind === "int" ? int64 : uint64;
      if (typeof raw !== "bigint") throw CorralError.invalidArgument(field, "must be a bigint");
      if (raw < range.min || raw > range.max)
        throw CorralError.invalidArgument(
          field,
          `${raw} is outside the ${kind === "int" ? "int64" : "uint64"} range`,
        );
      return { kind, value: raw };
    }
    case "double":
    case "float":
      if (typeof raw !== "number") throw CorralError.invalidArgument(field, "must be a number");
      // Floats are float32 on the wire; storing the rounded value makes equality exact.
      return { kind, value: kind === "float" ? Math.fround(raw) : raw };
    case "bool":
      if (typeof raw !== "boolean") throw CorralError.invalidArgument(field, "must be a boolean");
      return { kind, value: raw };
  }
}

function checkSize(bytes: number, field: string): void {
  if (bytes > limits.maxMetadataValueBytes)
    throw CorralError.invalidArgument(
      field,
      `is ${bytes} bytes; the limit is ${limits.maxMetadataValueBytes}`,
    );
}

function checkRecordKeys(
  record: Record<string, unknown>,
  field: string,
  maxKeys: number,
  maxKeyLength: number,
): void {
  const keys = Object.keys(record);
  if (keys.length > maxKeys)
    throw CorralError.invalidArgument(field, `has ${keys.length} keys; the limit is ${maxKeys}`);
  for (const key of keys) {
    checkText(key, `${field} key "${key}"`, maxKeyLength);
    if (reservedKeys.has(key)) throw CorralError.invalidArgument(`${field} key "${key}"`, "is reserved");
  }
}

export function validateMetadata(value: unknown, field = "metadata"): Record<string, MetadataValue> {
  const record = asObject(value, field);
  checkRecordKeys(record, field, limits.maxMetadataKeys, limits.maxMetadataKeyLength);
  const out: Record<string, MetadataValue> = {};
  for (const [key, item] of Object.entries(record)) out[key] = validateMetadataValue(item, `${field}.${key}`);
  return out;
}

export function validateLabels(value: unknown, field = "labels"): Record<string, string> {
  const record = asObject(value, field);
  checkRecordKeys(record, field, limits.maxLabels, limits.maxLabelKeyLength);
  const out: Record<string, string> = {};
  for (const [key, item] of Object.entries(record))
    out[key] = checkText(item, `${field}.${key}`, limits.maxLabelValueLength, { allowEmpty: true });
  return out;
}

/** Deduplicated, in the enum's order, so equal sets store equal. */
export function validateServices(value: unknown, field = "services"): NodeService[] {
  const given = asArray(value, field).map((item, i) => asOneOf(item, nodeServices, `${field}[${i}]`));
  return nodeServices.filter((service) => given.includes(service));
}

function count(value: unknown, field: string): number {
  const n = asNumber(value, field);
  if (!Number.isSafeInteger(n) || n < 0)
    throw CorralError.invalidArgument(field, `must be a non-negative integer, got ${n}`);
  return n;
}

/** Missing fields default to zero / none, so an agent may report only what it knows. */
export function validateResources(value: unknown, field = "resources"): Resources {
  const input = asObject(value, field);
  const base = emptyResources();
  const at = (name: string) => `${field}.${name}`;
  const list = <T>(name: string, max: number, item: (entry: unknown, path: string) => T): T[] => {
    if (input[name] === undefined) return [];
    const entries = asArray(input[name], at(name));
    if (entries.length > max)
      throw CorralError.invalidArgument(at(name), `has ${entries.length} entries; the limit is ${max}`);
    return entries.map((entry, i) => item(entry, `${at(name)}[${i}]`));
  };
  const gpus = list<Gpu>("gpus", limits.maxGpus, (entry, path) => {
    const gpu = asObject(entry, path);
    return {
      name: validateShortText(gpu.name ?? "", `${path}.name`),
      memoryMb: count(gpu.memoryMb ?? 0, `${path}.memoryMb`),
      uuid: validateShortText(gpu.uuid ?? "", `${path}.uuid`),
    };
  });
  const disks = list<Disk>("disks", limits.maxDisks, (entry, path) => {
    const disk = asObject(entry, path);
    return {
      mount: checkText(disk.mount, `${path}.mount`, limits.maxMountLength),
      sizeBytes: count(disk.sizeBytes ?? 0, `${path}.sizeBytes`),
    };
  });
  return {
    cpuCores: count(input.cpuCores ?? base.cpuCores, at("cpuCores")),
    memoryMb: count(input.memoryMb ?? base.memoryMb, at("memoryMb")),
    gpus,
    maxLayers: count(input.maxLayers ?? base.maxLayers, at("maxLayers")),
    usedLayers: count(input.usedLayers ?? base.usedLayers, at("usedLayers")),
    disks,
  };
}
