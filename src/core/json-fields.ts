import { CorralError } from "../base/errors.ts";

/** Readers for decoding JSON the core wrote: each names the field path it rejects. */

export type JsonObject = Record<string, unknown>;

export function asObject(value: unknown, path: string): JsonObject {
  if (typeof value !== "object" || value === null || Array.isArray(value))
    throw CorralError.invalidArgument(path, "must be an object");
  return value as JsonObject;
}

export function asArray(value: unknown, path: string): unknown[] {
  if (!Array.isArray(value)) throw CorralError.invalidArgument(path, "must be an array");
  return value;
}

export function asString(value: unknown, path: string): string {
  if (typeof value !== "string") throw CorralError.invalidArgument(path, "must be a string");
  return value;
}

export function asBoolean(value: unknown, path: string): boolean {
  if (typeof value !== "boolean") throw CorralError.invalidArgument(path, "must be a boolean");
  return value;
}

export function asNumber(value: unknown, path: string): number {
  if (typeof value !== "number" || !Number.isFinite(value))
    throw CorralError.invalidArgument(path, "must be a finite number");
  return value;
}

export function asOneOf<T extends string>(value: unknown, allowed: readonly T[], path: string): T {
  if (typeof value !== "string" || !(allowed as readonly string[]).includes(value))
    throw CorralError.invalidArgument(path, `must be one of ${allowed.join(", ")}`);
  return value as T;
}

export function asStringRecord(value: unknown, path: string): Record<string, string> {
  const object = asObject(value, path);
  const out: Record<string, string> = {};
  for (const [key, item] of Object.entries(object)) out[key] = asString(item, `${path}.${key}`);
  return out;
}
