import type { MetadataValue } from "./node.ts";

/**
 * Same kind and equal value. Bytes compare bytewise; floats compare as float32, the precision they are sent
 * with; NaN equals NaN (a filter for NaN should find it) and 0 equals -0.
 */
export function metadataEquals(a: MetadataValue, b: MetadataValue): boolean {
  switch (a.kind) {
    case "bytes":
      return b.kind === "bytes" && bytesEqual(a.value, b.value);
    case "double":
      return b.kind === "double" && numbersEqual(a.value, b.value);
    case "float":
      return b.kind === "float" && numbersEqual(Math.fround(a.value), Math.fround(b.value));
    default:
      return a.kind === b.kind && a.value === b.value;
  }
}

/** True when `metadata` holds every key of `filter` with an equal value of the same kind. */
export function metadataMatches(
  metadata: Readonly<Record<string, MetadataValue>>,
  filter: Readonly<Record<string, MetadataValue>>,
): boolean {
  return Object.entries(filter).every(([key, wanted]) => {
    const actual = Object.hasOwn(metadata, key) ? metadata[key] : undefined;
    return actual !== undefined && metadataEquals(actual, wanted);
  });
}

export function bytesEqual(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

function numbersEqual(a: number, b: number): boolean {
  return a === b || (Number.isNaN(a) && Number.isNaN(b));
}
