export type OutputFormat = "table" | "json";

export function parseOutputFormat(value: string): OutputFormat {
  if (value !== "table" && value !== "json")
    throw new Error(`--output must be table or json, not "${value}"`);
  return value;
}

/** Left-aligned columns separated by two spaces; the header in capitals, like kubectl and nomad. */
export function renderTable(headers: readonly string[], rows: readonly (readonly string[])[]): string {
  const widths = headers.map((header, i) =>
    Math.max(header.length, ...rows.map((row) => (row[i] ?? "").length)),
  );
  const line = (cells: readonly string[]) =>
    cells
      .map((cell, i) => (i === cells.length - 1 ? cell : cell.padEnd(widths[i] ?? 0)))
      .join("  ")
      .trimEnd();
  return `${[line(headers.map((h) => h.toUpperCase())), ...rows.map(line)].join("\n")}\n`;
}

export function printJson(value: unknown): void {
  process.stdout.write(
    `${JSON.stringify(value, (_key, v) => (typeof v === "bigint" ? v.toString() : v), 2)}\n`,
  );
}

/** `label: value` lines with the values aligned; a row whose value is a list of rows nests under it. */
export type Field = readonly [label: string, value: string | readonly Field[]];

export function renderFields(fields: readonly Field[], indent = ""): string {
  const width = Math.max(0, ...fields.map(([label]) => label.length + 1));
  return fields
    .map(([label, value]) =>
      typeof value === "string"
        ? `${indent}${`${label}:`.padEnd(width)}  ${value}`.trimEnd()
        : `${indent}${label}:${value.length === 0 ? "  -" : `\n${renderFields(value, `${indent}  `).trimEnd()}`}`,
    )
    .join("\n")
    .concat("\n");
}
