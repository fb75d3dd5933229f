import { readdirSync, readFileSync } from "node:fs";

/** Live (not zombie) processes whose argv is exactly `argv`, read from /proc. */
export function processesRunning(argv: readonly string[]): number[] {
  const wanted = `${argv.join("\0")}\0`;
  const found: number[] = [];
  for (const pid of readdirSync("/proc")) {
    if (!/^\d+$/.test(pid)) continue;
    try {
      if (readFileSync(`/proc/${pid}/cmdline`, "utf8") !== wanted) continue;
      const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
      if (stat.slice(stat.lastIndexOf(")") + 2)[0] !== "Z") found.push(Number(pid));
    } catch {
      // gone while reading
    }
  }
  return found;
}
