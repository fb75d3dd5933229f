import { execFile } from "node:child_process";
import { existsSync, readFileSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { CorralError } from "./errors.ts";

/**
 * The folder that holds corral's package.json: the repository in a clone, the installed package
 * otherwise. Paths to shipped files (web-dist/, plans/, proto/, bin/) start here and never from a
 * module's own place, because this module is src/base/package-root.ts in a clone but is bundled into
 * dist/corral.js (or one of its chunks) in the package: `new URL("../../x", import.meta.url)` would
 * point at different folders in the two layouts.
 */
let found: string | undefined;

export function packageRoot(): string {
  if (found !== undefined) return found;
  let dir = dirname(fileURLToPath(import.meta.url));
  for (;;) {
    if (isCorralPackage(join(dir, "package.json"))) {
      found = dir;
      return dir;
    }
    const parent = dirname(dir);
    if (parent === dir) {
      throw new CorralError(
        "INTERNAL",
        `no corral package.json above ${fileURLToPath(import.meta.url)}: the installed package is incomplete; reinstall it`,
      );
    }
    dir = parent;
  }
}

function isCorralPackage(file: string): boolean {
  if (!existsSync(file)) return false;
  try {
    return (JSON.parse(readFileSync(file, "utf8")) as { name?: unknown }).name === "corral";
  } catch {
    return false;
  }
}

/** A path inside the package, e.g. `packagePath("web-dist")`. */
export function packagePath(...parts: string[]): string {
  return join(packageRoot(), ...parts);
}

/**
 * How to start the corral CLI as a child process: node on bin/corral.js, which picks the built code
 * in an installed package and the sources in a clone (see the README, "Building and packaging").
 * Children never name tsx themselves, so an installed package never needs it. `nodeFlags` go to node
 * (e.g. defaults.agent.nodeFlags).
 */
export function corralCommand(
  args: readonly string[],
  nodeFlags: readonly string[] = [],
): { file: string; args: string[] } {
  return { file: process.execPath, args: [...nodeFlags, packagePath("bin", "corral.js"), ...args] };
}

/**
 * Runs `npm pack` on the package root (or `root`, a copy of it) into `destination` and resolves with
 * the tarball's path.
 * In a clone this runs `prepack` (the dashboard and dist/ builds) first, so it takes a while; an
 * installed package (no src/) has no build to run and packs what it holds.
 */
export function packPackage(
  destination: string,
  options: { timeoutMs?: number; root?: string } = {},
): Promise<string> {
  const root = options.root ?? packageRoot();
  // An installed package has no sources and no build tools: its prepack (the builds) must not run.
  const scripts = existsSync(join(root, "src")) ? [] : ["--ignore-scripts"];
  return new Promise((resolvePath, reject) => {
    execFile(
      "npm",
      ["pack", "--json", ...scripts, "--pack-destination", resolve(destination)],
      { cwd: root, timeout: options.timeoutMs ?? 600_000, maxBuffer: 64 * 1024 * 1024 },
      (error, stdout, stderr) => {
        if (error !== null) {
          reject(
            new CorralError("UNAVAILABLE", `npm pack failed in ${root}: ${stderr.trim() || error.message}`),
          );
          return;
        }
        // prepack's scripts print to stdout too: the JSON is the last thing, starting on a line of its own.
        const json = stdout.startsWith("[") ? stdout : stdout.slice(stdout.lastIndexOf("\n[") + 1);
        let filename: string | undefined;
        try {
          filename = (JSON.parse(json) as { filename?: string }[])[0]?.filename;
        } catch {
          filename = undefined;
        }
        if (filename === undefined) {
          reject(new CorralError("INTERNAL", `npm pack printed no tarball name: ${stdout.slice(0, 200)}`));
          return;
        }
        resolvePath(join(resolve(destination), filename));
      },
    );
  });
}
