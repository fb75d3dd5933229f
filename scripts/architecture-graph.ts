/**
 * Prints the picture the README's architecture section shows, from the code itself: each top-level
 * folder of src/ with its files and lines, and the imports between folders (how many), as text and as
 * a Mermaid graph. `node --import tsx scripts/architecture-graph.ts [--mermaid] [--src <dir>]`
 */
import { readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { importEdges, layerOf } from "../test/architecture/layer-rules.ts";

const srcArg = process.argv.indexOf("--src");
const srcDir: string =
  (srcArg > 0 ? process.argv[srcArg + 1] : undefined) ?? fileURLToPath(new URL("../src/", import.meta.url));

function sizes(dir: string): { files: number; lines: number } {
  let files = 0;
  let lines = 0;
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const path = join(dir, entry.name);
    if (entry.isDirectory()) {
      const inner = sizes(path);
      files += inner.files;
      lines += inner.lines;
    } else if (/\.tsx?$/.test(entry.name)) {
      files++;
      lines += readFileSync(path, "utf8").split("\n").length;
    }
  }
  return { files, lines };
}

const folders = readdirSync(srcDir, { withFileTypes: true })
  .filter((e) => e.isDirectory())
  .map((e) => e.name)
  .sort();
const arrows = new Map<string, number>();
for (const edge of importEdges(srcDir)) {
  const from = layerOf(edge.from);
  const to = layerOf(edge.to);
  if (from === to || !folders.includes(from) || !folders.includes(to) || to === "gen") continue;
  arrows.set(`${from} ${to}`, (arrows.get(`${from} ${to}`) ?? 0) + 1);
}

if (process.argv.includes("--mermaid")) {
  console.log("graph TD");
  for (const [key, count] of [...arrows].sort()) {
    const [from = "", to = ""] = key.split(" ");
    console.log(`  ${from} -->|${count}| ${to}`);
  }
} else {
  console.log("folder          files   lines");
  for (const folder of folders) {
    const { files, lines } = sizes(join(srcDir, folder));
    console.log(`${folder.padEnd(14)} ${String(files).padStart(6)} ${String(lines).padStart(7)}`);
  }
  console.log("\nimports between folders (generated code left out):");
  for (const from of folders) {
    const targets = [...arrows]
      .filter(([key]) => key.startsWith(`${from} `))
      .map(([key, count]) => `${key.split(" ")[1]} ${count}`);
    if (targets.length > 0) console.log(`  ${from.padEnd(12)} → ${targets.join(", ")}`);
  }
}
