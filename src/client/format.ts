import { type Timestamp, timestampMs } from "@bufbuild/protobuf/wkt";
import type { MetadataValue } from "../gen/corral/v1/nodes_pb.ts";

/** A span the way kubectl prints ages: 45s, 5m12s, 3h4m, 2d3h. */
export function formatSpan(ms: number): string {
  const s = Math.max(0, Math.floor(ms / 1000));
  if (s < 60) return `${s}s`;
  const m = Math.floor(s / 60);
  if (m < 60) return s % 60 === 0 ? `${m}m` : `${m}m${s % 60}s`;
  const h = Math.floor(m / 60);
  if (h < 24) return m % 60 === 0 ? `${h}h` : `${h}h${m % 60}m`;
  const d = Math.floor(h / 24);
  return h % 24 === 0 ? `${d}d` : `${d}d${h % 24}h`;
}

/** How long ago `at` was ("-" when unset). */
export function ago(at: Timestamp | undefined, now = Date.now()): string {
  return at === undefined ? "-" : formatSpan(now - timestampMs(at));
}

/** How long until `at` ("-" when unset, "expired" when passed). */
export function until(at: Timestamp | undefined, now = Date.now()): string {
  if (at === undefined) return "-";
  const left = timestampMs(at) - now;
  return left <= 0 ? "expired" : formatSpan(left);
}

export function isoTime(at: Timestamp | undefined): string {
  return at === undefined ? "-" : new Date(timestampMs(at)).toISOString();
}

/** Bytes up to this length print as hex; longer ones as their length. */
const maxHexBytes = 16;

export function metadataValueText(value: MetadataValue): string {
  const v = value.value;
  switch (v.case) {
    case "stringValue":
      return v.value;
    case "bytesValue":
      return v.value.length <= maxHexBytes
        ? `0x${Buffer.from(v.value).toString("hex")}`
        : `<${v.value.length} bytes>`;
    case "intValue":
    case "uintValue":
      return v.value.toString();
    case "doubleValue":
    case "floatValue":
    case "boolValue":
      return String(v.value);
    default:
      return "<unset>";
  }
}

/** `k=v` pairs, sorted by key, comma-separated ("-" when empty). */
export function metadataText(metadata: Readonly<Record<string, MetadataValue>>): string {
  const entries = Object.entries(metadata).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
  return entries.length === 0 ? "-" : entries.map(([k, v]) => `${k}=${metadataValueText(v)}`).join(",");
}

/** `sha256:0123456789ab…` for tables; JSON keeps the whole fingerprint. */
export function shortFingerprint(fingerprint: string): string {
  const match = /^([a-z0-9]+:)([0-9a-f]+)$/i.exec(fingerprint);
  if (match?.[1] === undefined || match[2] === undefined) return fingerprint || "-";
  return match[2].length <= 16 ? fingerprint : `${match[1]}${match[2].slice(0, 16)}…`;
}

/** An enum value's name without its prefix, lower case: NodeStatus.READY → "ready". */
export function enumText(names: Record<number, string>, value: number): string {
  return (names[value] ?? String(value)).toLowerCase();
}
