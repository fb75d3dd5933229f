import type { Timestamp } from "@bufbuild/protobuf/wkt";
import { timestampMs } from "@bufbuild/protobuf/wkt";

export function bytesText(bytes: number): string {
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let value = bytes;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit += 1;
  }
  return `${value.toFixed(value >= 100 || unit === 0 ? 0 : 1)} ${units[unit]}`;
}

export function mbText(mb: number | bigint): string {
  return bytesText(Number(mb) * 1024 * 1024);
}

export function agoText(ms: number, now = Date.now()): string {
  const s = Math.max(0, Math.round((now - ms) / 1000));
  if (s < 60) return `${s}s ago`;
  if (s < 3600) return `${Math.floor(s / 60)}m ago`;
  if (s < 86400) return `${Math.floor(s / 3600)}h ago`;
  return `${Math.floor(s / 86400)}d ago`;
}

export function timeText(ts: Timestamp | undefined): string {
  return ts === undefined ? "-" : new Date(timestampMs(ts)).toLocaleString();
}

export function clockText(ms: number): string {
  return new Date(ms).toLocaleTimeString();
}

export function tsMs(ts: Timestamp | undefined): number {
  return ts === undefined ? 0 : timestampMs(ts);
}
