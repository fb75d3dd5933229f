import { execFile } from "node:child_process";
import { randomBytes } from "node:crypto";
import type { Stats } from "node:fs";
import { chmod, chown, lstat, mkdir, open, readFile, rename, rm } from "node:fs/promises";
import { basename, dirname, join } from "node:path";
import { type FileSpec, formatMode } from "../../core/provisioning/provisioning-step.ts";
import { escapeFromRoots } from "./confined-path.ts";
import type { StepContext, StepResult } from "./step-context.ts";

interface Owner {
  uid: number;
  /** -1: leave the group as it is. */
  gid: number;
}

/**
 * `file`: makes a file hold exactly `content` with `mode` (and `owner`). Nothing to do → "unchanged";
 * a change of content is written to a temporary file in the same directory and renamed over the old
 * one, so a reader never sees half a file; a change of mode or owner alone is applied in place.
 */
export async function runFileStep(spec: FileSpec, ctx: StepContext): Promise<StepResult> {
  if (ctx.signal.aborted) return { status: "failed", message: "cancelled" };
  // The controller checked the path against the roots as text; here, at write time, links count too.
  const confined = async () =>
    spec.roots === undefined ? undefined : escapeFromRoots(spec.path, spec.roots);
  const outside = await confined();
  if (outside !== undefined) return { status: "failed", message: outside };
  const desired = Buffer.from(spec.content);
  const owner = spec.owner === undefined ? undefined : await resolveOwner(spec.owner);
  const current = await lstat(spec.path).catch((error: NodeJS.ErrnoException) => {
    if (error.code === "ENOENT") return undefined;
    throw error;
  });
  if (current?.isDirectory()) return { status: "failed", message: `${spec.path} is a directory` };

  if (current?.isFile()) {
    const sameContent = current.size === desired.length && (await readFile(spec.path)).equals(desired);
    const modeNow = current.mode & 0o7777;
    const ownerOk = owner === undefined || ownerMatches(current, owner);
    if (sameContent && modeNow === spec.mode && ownerOk)
      return { status: "unchanged", message: `${spec.path} is already as wanted` };
    if (sameContent) {
      const changes: string[] = [];
      if (modeNow !== spec.mode) {
        await chmod(spec.path, spec.mode);
        changes.push(`mode ${formatMode(modeNow)} → ${formatMode(spec.mode)}`);
      }
      if (owner !== undefined && !ownerOk) {
        await chownExplained(spec.path, owner);
        changes.push(`owner → ${spec.owner}`);
      }
      return { status: "succeeded", message: `${spec.path}: ${changes.join(", ")}` };
    }
  }

  const directory = dirname(spec.path);
  await mkdir(directory, { recursive: true, mode: 0o755 });
  // Again after creating directories: a link may have appeared on the way since the first check.
  const escapeNow = await confined();
  if (escapeNow !== undefined) return { status: "failed", message: escapeNow };
  const temporary = join(directory, `.${basename(spec.path)}.corral-${randomBytes(4).toString("hex")}`);
  try {
    const handle = await open(temporary, "wx", 0o600);
    try {
      await handle.writeFile(desired);
      // The umask may have cut bits from the mode given to open.
      await handle.chmod(spec.mode);
      if (owner !== undefined) await chownExplained(temporary, owner, spec.path);
      await handle.sync();
    } finally {
      await handle.close();
    }
    await rename(temporary, spec.path);
  } catch (error) {
    await rm(temporary, { force: true });
    throw error;
  }
  const what = current === undefined ? "created" : current.isFile() ? "content changed" : "replaced";
  return {
    status: "succeeded",
    message: `${spec.path} ${what} (${desired.length} bytes, mode ${formatMode(spec.mode)}${spec.owner === undefined ? "" : `, owner ${spec.owner}`})`,
  };
}

function ownerMatches(stats: Stats, owner: Owner): boolean {
  return stats.uid === owner.uid && (owner.gid === -1 || stats.gid === owner.gid);
}

async function chownExplained(path: string, owner: Owner, shownPath = path): Promise<void> {
  try {
    await chown(path, owner.uid, owner.gid);
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    const uid = process.getuid?.() ?? -1;
    throw new Error(
      code === "EPERM"
        ? `cannot give ${shownPath} to uid ${owner.uid}: not permitted (the agent runs as uid ${uid}; changing owners needs root)`
        : `cannot change the owner of ${shownPath}: ${(error as Error).message}`,
    );
  }
}

/** "user", "user:group", "uid", "uid:gid": names from the passwd and group databases (getent, then /etc). */
async function resolveOwner(owner: string): Promise<Owner> {
  const [user = "", group] = owner.split(":");
  const uid = /^\d+$/.test(user) ? Number(user) : await lookupId("passwd", user);
  const gid =
    group === undefined || group === ""
      ? -1
      : /^\d+$/.test(group)
        ? Number(group)
        : await lookupId("group", group);
  return { uid, gid };
}

async function lookupId(database: "passwd" | "group", name: string): Promise<number> {
  const line = await new Promise<string | undefined>((resolve) => {
    execFile("getent", [database, name], { timeout: 5_000 }, (error, stdout) =>
      resolve(error === null ? stdout.split("\n")[0] : undefined),
    );
  });
  const fromGetent = line?.split(":")[2];
  if (fromGetent !== undefined && /^\d+$/.test(fromGetent)) return Number(fromGetent);
  const file = await readFile(`/etc/${database}`, "utf8").catch(() => "");
  for (const entry of file.split("\n")) {
    const fields = entry.split(":");
    if (fields[0] === name && /^\d+$/.test(fields[2] ?? "")) return Number(fields[2]);
  }
  throw new Error(`there is no ${database === "passwd" ? "user" : "group"} named "${name}" on this node`);
}
