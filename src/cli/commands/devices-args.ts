import { CorralError } from "../../base/errors.ts";

/** An integer written in decimal or hex (0x48). */
export function parseInteger(text: string, field: string): number {
  const trimmed = text.trim();
  const value = /^0x[0-9a-f]+$/i.test(trimmed)
    ? Number.parseInt(trimmed.slice(2), 16)
    : /^\d+$/.test(trimmed)
      ? Number(trimmed)
      : Number.NaN;
  if (!Number.isSafeInteger(value))
    throw CorralError.invalidArgument(field, `"${text}" is not a whole number (decimal or 0x hex)`);
  return value;
}

export function parseNumber(text: string, field: string): number {
  const value = Number(text.trim().replace(/%$/, ""));
  if (text.trim() === "" || !Number.isFinite(value))
    throw CorralError.invalidArgument(field, `"${text}" is not a number`);
  return text.trim().endsWith("%") ? value / 100 : value;
}

/**
 * Bytes from the command line: each argument a byte (0x1f, 31) or a run of hex digits ("de ad", "dead",
 * "0xdeadbeef" is one run).
 */
export function parseBytes(args: readonly string[], field: string): Uint8Array {
  const out: number[] = [];
  for (const arg of args.flatMap((a) => a.split(/[\s,]+/)).filter((a) => a !== "")) {
    if (/^0x[0-9a-f]{1,2}$/i.test(arg) || /^\d{1,3}$/.test(arg)) {
      const value = parseInteger(arg, field);
      if (value > 255) throw CorralError.invalidArgument(field, `${arg} is not a byte (0..255)`);
      out.push(value);
      continue;
    }
    const hex = arg.replace(/^0x/i, "");
    if (!/^([0-9a-f]{2})+$/i.test(hex))
      throw CorralError.invalidArgument(field, `"${arg}" is not bytes (0x1f, 31 or hex digits in pairs)`);
    for (let i = 0; i < hex.length; i += 2) out.push(Number.parseInt(hex.slice(i, i + 2), 16));
  }
  return Uint8Array.from(out);
}

/** Bytes as "0x1f 0x20 …". */
export function bytesText(data: Uint8Array): string {
  return data.length === 0 ? "-" : [...data].map((b) => `0x${b.toString(16).padStart(2, "0")}`).join(" ");
}

/** Per-node calls name their node in the request. */
export const nodeOption = [
  "--node <node>",
  "node id or name (default: the controller's own node)",
  "",
] as const;
