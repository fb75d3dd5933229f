import { CorralError } from "../../base/errors.ts";
import { asArray, asBoolean, asNumber, asObject, asOneOf, asString } from "../json-fields.ts";
import type { LayerRange } from "./placement.ts";

/** The model registry's record: Distributed LLM's ModelInfo, plus where its layers are and why. */

export const placementStates = ["unassigned", "placed", "partial", "unplaced"] as const;
/**
 * - `unassigned`: registered, not to be placed;
 * - `placed`: every layer has a node;
 * - `partial`: some layers have a node, the rest wait for free capacity;
 * - `unplaced`: assigned, but no layer found a node.
 */
export type PlacementState = (typeof placementStates)[number];

export interface ModelRecord {
  id: string;
  name: string;
  version: string;
  layerCount: number;
  filePath: string;
  sizeBytes: number;
  /** The operator wants it placed (`corral models assign`). */
  assigned: boolean;
  /** Sorted by start; node ids. */
  assignments: LayerRange[];
  state: PlacementState;
  /** One sentence for people: what is placed where, or what is missing and why. */
  message: string;
  createdAt: number;
  updatedAt: number;
}

export interface AddModelInput {
  /** A fresh UUID when absent. */
  id?: string;
  name: string;
  version?: string;
  layerCount: number;
  filePath?: string;
  sizeBytes?: number;
}

export const modelLimits = {
  maxNameLength: 128,
  maxVersionLength: 64,
  maxPathLength: 4096,
  maxLayerCount: 100_000,
} as const;

const controlChar = /\p{Cc}/u;
const loneSurrogate = /[\uD800-\uDFFF]/u;

function text(value: unknown, field: string, max: number, allowEmpty: boolean): string {
  const s = asString(value, field);
  if (s === "" && !allowEmpty) throw CorralError.invalidArgument(field, "is empty");
  if (controlChar.test(s) || loneSurrogate.test(s))
    throw CorralError.invalidArgument(field, "holds control characters or unpaired surrogates");
  const length = [...s].length;
  if (length > max) throw CorralError.invalidArgument(field, `is ${length} characters; the limit is ${max}`);
  return s;
}

/** A model name is one word (no whitespace): it is typed on command lines and in TUI commands. */
export function validateModelName(value: unknown, field = "name"): string {
  const name = text(value, field, modelLimits.maxNameLength, false);
  if (/\s/u.test(name)) throw CorralError.invalidArgument(field, "must not contain whitespace");
  return name;
}

export function validateLayerCount(value: unknown, field = "layer_count"): number {
  const n = asNumber(value, field);
  if (!Number.isSafeInteger(n) || n < 1 || n > modelLimits.maxLayerCount)
    throw CorralError.invalidArgument(
      field,
      `must be a whole number from 1 to ${modelLimits.maxLayerCount}, got ${n}`,
    );
  return n;
}

export function validateSizeBytes(value: unknown, field = "size_bytes"): number {
  const n = asNumber(value, field);
  if (!Number.isSafeInteger(n) || n < 0)
    throw CorralError.invalidArgument(field, `must be a non-negative whole number of bytes, got ${n}`);
  return n;
}

/** A new record, checked; not assigned, so it holds no layers yet. */
export function buildModelRecord(input: AddModelInput, now: number): ModelRecord {
  const o = asObject(input, "model");
  return {
    id: o.id === undefined ? crypto.randomUUID() : text(o.id, "id", modelLimits.maxNameLength, false),
    name: validateModelName(o.name),
    version: text(o.version ?? "", "version", modelLimits.maxVersionLength, true),
    layerCount: validateLayerCount(o.layerCount),
    filePath: text(o.filePath ?? "", "file_path", modelLimits.maxPathLength, true),
    sizeBytes: validateSizeBytes(o.sizeBytes ?? 0),
    assigned: false,
    assignments: [],
    state: "unassigned",
    message: unassignedMessage(validateLayerCount(o.layerCount)),
    createdAt: now,
    updatedAt: now,
  };
}

export function unassignedMessage(layerCount: number): string {
  return `not assigned; assigning it places its ${layerCount} layer${layerCount === 1 ? "" : "s"}`;
}

export function placedLayers(model: Pick<ModelRecord, "assignments">): number {
  return model.assignments.reduce((sum, range) => sum + range.count, 0);
}

export function encodeModel(model: ModelRecord): string {
  return JSON.stringify(model);
}

/** Decodes a stored record; a malformed one is INTERNAL (the store holds what the core wrote). */
export function decodeStoredModel(textValue: string, key: string): ModelRecord {
  try {
    const o = asObject(JSON.parse(textValue), "model");
    return {
      id: asString(o.id, "model.id"),
      name: asString(o.name, "model.name"),
      version: asString(o.version, "model.version"),
      layerCount: asNumber(o.layerCount, "model.layerCount"),
      filePath: asString(o.filePath, "model.filePath"),
      sizeBytes: asNumber(o.sizeBytes, "model.sizeBytes"),
      assigned: asBoolean(o.assigned, "model.assigned"),
      assignments: asArray(o.assignments, "model.assignments").map((entry, i) => {
        const r = asObject(entry, `model.assignments[${i}]`);
        return {
          nodeId: asString(r.nodeId, `model.assignments[${i}].nodeId`),
          start: asNumber(r.start, `model.assignments[${i}].start`),
          count: asNumber(r.count, `model.assignments[${i}].count`),
        };
      }),
      state: asOneOf(o.state, placementStates, "model.state"),
      message: asString(o.message, "model.message"),
      createdAt: asNumber(o.createdAt, "model.createdAt"),
      updatedAt: asNumber(o.updatedAt, "model.updatedAt"),
    };
  } catch (error) {
    throw new CorralError("INTERNAL", `stored model at ${key} is malformed: ${(error as Error).message}`, {
      cause: error,
    });
  }
}

/** Where models live in the store; names are unique, held by an index key written in the same txn. */
export const modelKeyPrefix = "/models/";
export const modelNameKeyPrefix = "/model-names/";
/** A drained node takes no layers and gives up those it holds; the key is its id. */
export const drainKeyPrefix = "/placement/drained/";

export function modelKey(id: string): string {
  return modelKeyPrefix + encodeURIComponent(id);
}

export function modelNameKey(name: string): string {
  return modelNameKeyPrefix + encodeURIComponent(name);
}

export function drainKey(nodeId: string): string {
  return drainKeyPrefix + encodeURIComponent(nodeId);
}

export function nodeIdOfDrainKey(key: string): string {
  return decodeURIComponent(key.slice(drainKeyPrefix.length));
}
