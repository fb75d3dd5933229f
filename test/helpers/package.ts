import { execFileSync } from "node:child_process";
import { copyFileSync, mkdirSync, statSync, symlinkSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { packPackage } from "../../src/base/package-root.ts";

const repo = fileURLToPath(new URL("../../", import.meta.url));

/**
 * Copies the files git knows of (tracked and untracked-not-ignored, as in the working tree) to `to`,
 * with the checkout's node_modules linked in for the build tools: packing builds web-dist/ and dist/
 * there, so this checkout's outputs are not rewritten while other tests read them.
 */
export function copyWorkingTree(to: string): void {
  const files = execFileSync("git", ["ls-files", "-z", "--cached", "--others", "--exclude-standard"], {
    cwd: repo,
    encoding: "utf8",
  })
    .split("\0")
    .filter((f) => f !== "" && f !== "node_modules");
  for (const file of files) {
    const from = join(repo, file);
    try {
      if (!statSync(from).isFile()) continue;
    } catch {
      continue; // deleted in the working tree, not yet in the index
    }
    mkdirSync(dirname(join(to, file)), { recursive: true });
    copyFileSync(from, join(to, file));
  }
  symlinkSync(join(repo, "node_modules"), join(to, "node_modules"));
}

/** The package as `npm pack` makes it from this working tree (prepack builds the dashboard and dist/). */
export async function packBuiltPackage(workDir: string): Promise<string> {
  const tree = join(workDir, "tree");
  copyWorkingTree(tree);
  return packPackage(workDir, { root: tree, timeoutMs: 600_000 });
}
