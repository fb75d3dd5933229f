/** Text that fits terminal cells: control characters made harmless, widths counted, cut to fit. */

/**
 * Replaces control characters (escape sequences from a node's name or metadata must not reach the
 * terminal) and line breaks with a visible stand-in.
 */
export function sanitize(text: string): string {
  // biome-ignore lint/suspicious/noControlCharactersInRegex: matching control characters is the point
  return text.replace(/[\u0000-\u001f\u007f-\u009f]/g, "�");
}

/** Columns a code point takes: 0 for combining marks, 2 for wide East Asian text and emoji, else 1. */
export function charWidth(codePoint: number): number {
  if (
    (codePoint >= 0x300 && codePoint <= 0x36f) ||
    (codePoint >= 0x200b && codePoint <= 0x200f) ||
    (codePoint >= 0xfe00 && codePoint <= 0xfe0f)
  )
    return 0;
  if (
    (codePoint >= 0x1100 && codePoint <= 0x115f) ||
    (codePoint >= 0x2e80 && codePoint <= 0xa4cf) ||
    (codePoint >= 0xac00 && codePoint <= 0xd7a3) ||
    (codePoint >= 0xf900 && codePoint <= 0xfaff) ||
    (codePoint >= 0xfe30 && codePoint <= 0xfe4f) ||
    (codePoint >= 0xff00 && codePoint <= 0xff60) ||
    (codePoint >= 0xffe0 && codePoint <= 0xffe6) ||
    (codePoint >= 0x1f300 && codePoint <= 0x1faff) ||
    (codePoint >= 0x20000 && codePoint <= 0x3fffd)
  )
    return 2;
  return 1;
}

export function textWidth(text: string): number {
  let width = 0;
  for (const ch of text) width += charWidth(ch.codePointAt(0) ?? 0);
  return width;
}

/** At most `width` columns of `text`, ending in "…" when cut. */
export function truncate(text: string, width: number): string {
  if (width <= 0) return "";
  if (textWidth(text) <= width) return text;
  let out = "";
  let used = 0;
  for (const ch of text) {
    const w = charWidth(ch.codePointAt(0) ?? 0);
    if (used + w > width - 1) break;
    out += ch;
    used += w;
  }
  return `${out}…`;
}

/** Exactly `width` columns: cut with "…" or padded with spaces (on the left when `right`). */
export function fit(text: string, width: number, align: "left" | "right" = "left"): string {
  const cut = truncate(sanitize(text), width);
  const pad = " ".repeat(Math.max(0, width - textWidth(cut)));
  return align === "right" ? pad + cut : cut + pad;
}

/** 512M, 7.8G, 1.5T: memory given in MiB. */
export function formatMb(mb: number): string {
  if (!Number.isFinite(mb) || mb < 0) return "-";
  if (mb < 1024) return `${Math.round(mb)}M`;
  if (mb < 1024 * 1024) return `${(mb / 1024).toFixed(1)}G`;
  return `${(mb / 1024 / 1024).toFixed(1)}T`;
}

/** 900B, 12.0K, 4.2G: a size in bytes. */
export function formatBytes(bytes: number): string {
  if (!Number.isFinite(bytes) || bytes <= 0) return "-";
  const units = ["B", "K", "M", "G", "T", "P"];
  let value = bytes;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit++;
  }
  return unit === 0 ? `${value}B` : `${value.toFixed(1)}${units[unit]}`;
}

/** HH:MM:SS in local time. */
export function clockTime(at: number): string {
  const date = new Date(at);
  const two = (n: number) => String(n).padStart(2, "0");
  return `${two(date.getHours())}:${two(date.getMinutes())}:${two(date.getSeconds())}`;
}
