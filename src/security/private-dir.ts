import { chmod, mkdir, readdir, stat } from "node:fs/promises";
import { join } from "node:path";

/** Files in a data dir that hold secrets: private keys, the node's identity, the store. */
const secretFile = /(\.key|^identity\.json|^corral\.db.*)$/;
/**
 * The dirs corral makes in a data dir (the CA, the first admin's credentials, pipelines, plans). Only
 * these are changed: a data dir set to a dir that holds other things must not have those changed.
 */
const corralDirs = new Set(["ca", "admin", "pipelines", "plans"]);

/**
 * Makes a data dir private to the user corral runs as: the dir and corral's dirs in it mode 0700,
 * secret files in either mode 0600. New dirs and files are created so already; this tightens what an
 * older version, a restore or a hand-made dir left looser, so that nothing a pipeline run or a
 * provisioning step starts as another user can read the CA key, a node key or the store. Each change
 * is reported (`onTightened`), so the operator learns the dir was exposed.
 */
export async function securePrivateDir(dir: string, onTightened: (what: string) => void): Promise<void> {
  await mkdir(dir, { recursive: true, mode: 0o700 });
  await tighten(dir, 0o700, onTightened);
  for (const entry of await readdir(dir, { withFileTypes: true })) {
    const path = join(dir, entry.name);
    if (entry.isDirectory() && corralDirs.has(entry.name)) {
      await tighten(path, 0o700, onTightened);
      for (const inner of await readdir(path, { withFileTypes: true }))
        if (inner.isFile() && secretFile.test(inner.name))
          await tighten(join(path, inner.name), 0o600, onTightened);
    } else if (entry.isFile() && secretFile.test(entry.name)) {
      await tighten(path, 0o600, onTightened);
    }
  }
}

/** Removes the bits beyond `mode` (group, other); a file gone meanwhile is no concern. */
async function tighten(path: string, mode: number, onTightened: (what: string) => void): Promise<void> {
  try {
    const current = (await stat(path)).mode & 0o777;
    if ((current & ~mode) === 0) return;
    await chmod(path, current & mode);
    onTightened(`${path} was mode ${current.toString(8)}, now ${(current & mode).toString(8)}`);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== "ENOENT") throw error;
  }
}
