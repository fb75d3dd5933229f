import { realpath } from "node:fs/promises";
import { basename, dirname, join } from "node:path";
import { isWithinRoots } from "../../core/provisioning/provisioning-step.ts";

/** `path` with the symlinks of every part that exists resolved; the parts not there yet appended as given. */
async function resolveExisting(path: string): Promise<string> {
  const missing: string[] = [];
  let existing = path;
  for (;;) {
    try {
      return join(await realpath(existing), ...missing);
    } catch (error) {
      const code = (error as NodeJS.ErrnoException).code;
      const parent = dirname(existing);
      if ((code !== "ENOENT" && code !== "ENOTDIR") || parent === existing) throw error;
      missing.unshift(basename(existing));
      existing = parent;
    }
  }
}

/**
 * Why writing `path` would leave `roots` once symlinks are followed (a link in the plan's directory
 * pointing at /etc, say), or undefined when it stays. The file itself is not followed: a file step
 * renames over it, which replaces a link rather than writing through it.
 */
export async function escapeFromRoots(path: string, roots: readonly string[]): Promise<string | undefined> {
  const target = join(await resolveExisting(dirname(path)), basename(path));
  const realRoots = await Promise.all(roots.map(resolveExisting));
  if (isWithinRoots(target, realRoots)) return undefined;
  return `${path} resolves to ${target}, outside the plan's roots (${roots.join(", ")}); nothing was written`;
}
