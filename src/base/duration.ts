import { CorralError } from "./errors.ts";

const unitMs: Readonly<Record<string, number>> = {
  ms: 1,
  s: 1_000,
  m: 60_000,
  h: 3_600_000,
  d: 86_400_000,
};

/**
 * Parses a human duration ("250ms", "30s", "5m", "1h30m", "2d") or a number of milliseconds.
 * Go-style compound durations are accepted because NanoPing's YAML uses them.
 */
export function parseDuration(input: string | number, field = "duration"): number {
  if (typeof input === "number") {
    if (!Number.isFinite(input) || input < 0)
      throw CorralError.invalidArgument(field, `must be a non-negative number of milliseconds, got ${input}`);
    return input;
  }
  const text = input.trim();
  if (text === "") throw CorralError.invalidArgument(field, "is empty; write a duration such as 30s or 5m");
  if (/^\d+$/.test(text)) return Number(text);
  const part = /(\d+(?:\.\d+)?)(ms|s|m|h|d)/gy;
  let total = 0;
  let consumed = 0;
  for (let match = part.exec(text); match !== null; match = part.exec(text)) {
    const [whole, amount, unit] = match;
    total += Number(amount) * (unitMs[unit ?? ""] ?? Number.NaN);
    consumed += whole.length;
  }
  if (consumed !== text.length || !Number.isFinite(total)) {
    throw CorralError.invalidArgument(
      field,
      `"${input}" is not a duration; write e.g. 250ms, 30s, 5m, 1h30m`,
    );
  }
  return Math.round(total);
}

export function formatDuration(ms: number): string {
  if (ms < 1_000) return `${ms}ms`;
  if (ms < 60_000) return `${Math.round(ms / 100) / 10}s`;
  if (ms < 3_600_000) return `${Math.round(ms / 6_000) / 10}m`;
  return `${Math.round(ms / 360_000) / 10}h`;
}
