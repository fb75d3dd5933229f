import { execFile } from "node:child_process";
import { createHash } from "node:crypto";
import { createReadStream, existsSync, readFileSync } from "node:fs";
import { mkdir, readdir, stat } from "node:fs/promises";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { CorralError } from "../base/errors.ts";

const run = promisify(execFile);

export interface InstallPackage {
  readonly path: string;
  readonly size: number;
  /** sha256 hex of the file as it is now (checked again whenever the file changes). */
  readonly sha256: string;
}

/** How to give the controller a package, said in every refusal. */
const howToProvide =
  "give the controller a package: web.installPackage: <corral-x.y.z.tgz> in its config (or --install-package), " +
  "made with `npm pack` in a corral checkout";

/** The folder holding corral's package.json, found by walking up from this file. */
export function corralPackageRoot(from = fileURLToPath(import.meta.url)): string | undefined {
  let dir = dirname(from);
  for (;;) {
    const file = join(dir, "package.json");
    if (existsSync(file)) {
      try {
        if ((JSON.parse(readFileSync(file, "utf8")) as { name?: string }).name === "corral") return dir;
      } catch {
        // an unreadable package.json on the way up is not ours
      }
    }
    const parent = dirname(dir);
    if (parent === dir) return undefined;
    dir = parent;
  }
}

/**
 * The tarball `/corral.tgz` serves: the configured file, or one made once per version with `npm pack` in
 * the package this controller runs from, kept in `<dataDir>/package/`.
 */
export class InstallPackageSource {
  readonly #configured: string | undefined;
  readonly #packDir: string;
  readonly #version: string;
  #packing: Promise<string> | undefined;
  #digest: { path: string; mtimeMs: number; size: number; sha256: string } | undefined;

  constructor(options: { configured?: string; dataDir: string; version: string }) {
    this.#configured = options.configured;
    this.#packDir = join(options.dataDir, "package");
    this.#version = options.version;
  }

  /** The package now, with its digest; UNAVAILABLE (a 503 on the web) with what to do when there is none. */
  async current(): Promise<InstallPackage> {
    const path = this.#configured ?? (await this.#packed());
    const info = await stat(path).catch(() => undefined);
    if (info?.isFile() !== true)
      throw new CorralError("UNAVAILABLE", `the install package ${path} is not there; ${howToProvide}`);
    const cached = this.#digest;
    if (cached?.path === path && cached.mtimeMs === info.mtimeMs && cached.size === info.size)
      return { path, size: info.size, sha256: cached.sha256 };
    const sha256 = await sha256OfFile(path);
    this.#digest = { path, mtimeMs: info.mtimeMs, size: info.size, sha256 };
    return { path, size: info.size, sha256 };
  }

  #packed(): Promise<string> {
    // One `npm pack` at a time; a failure is not cached, so fixing the cause and asking again works.
    this.#packing ??= this.#pack().catch((error: unknown) => {
      this.#packing = undefined;
      throw error;
    });
    return this.#packing;
  }

  async #pack(): Promise<string> {
    const wanted = join(this.#packDir, `corral-${this.#version}.tgz`);
    if (existsSync(wanted)) return wanted;
    const root = corralPackageRoot();
    if (root === undefined)
      throw new CorralError("UNAVAILABLE", `cannot find corral's package.json to pack; ${howToProvide}`);
    await mkdir(this.#packDir, { recursive: true });
    try {
      // --ignore-scripts: an installed corral has no dev tools to run `prepare` with, and needs none.
      await run("npm", ["pack", "--ignore-scripts", "--pack-destination", this.#packDir], {
        cwd: root,
        timeout: 300_000,
        maxBuffer: 16 * 1024 * 1024,
      });
    } catch (error) {
      const detail = (error as { stderr?: string }).stderr?.trim().split("\n").slice(-3).join(" ") ?? "";
      throw new CorralError(
        "UNAVAILABLE",
        `npm pack in ${root} failed (${detail || (error as Error).message}); ${howToProvide}`,
        { cause: error },
      );
    }
    if (existsSync(wanted)) return wanted;
    const made = (await readdir(this.#packDir)).find((name) => name.endsWith(".tgz"));
    if (made === undefined)
      throw new CorralError("UNAVAILABLE", `npm pack in ${root} wrote no tarball; ${howToProvide}`);
    return join(this.#packDir, made);
  }
}

export function sha256OfFile(path: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const hash = createHash("sha256");
    createReadStream(path)
      .on("error", reject)
      .on("data", (chunk) => hash.update(chunk))
      .on("end", () => resolve(hash.digest("hex")));
  });
}
