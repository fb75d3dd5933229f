import { readdir, readFile, stat } from "node:fs/promises";
import { join, relative } from "node:path";
import { CorralError } from "../base/errors.ts";
import { packagePath } from "../base/package-root.ts";
import type { PlanCatalog } from "../core/provisioning/provisioning-engine.ts";
import {
  compareVersions,
  defaultPlanLimits,
  type Plan,
  PlanError,
  type PlanLimits,
  parsePlan,
  parsePlanRef,
} from "../core/provisioning/provisioning-plan.ts";
import { defaults } from "../defaults.ts";

/** The plans that ship with corral (`plans/` at the top of the package). */
export const shippedPlansDir = packagePath("plans");

export interface PlanDirectory {
  readonly path: string;
  /** Plans of a later directory replace those of an earlier one with the same name and version. */
  readonly label: "shipped" | "operator";
}

export interface LoadedPlans extends PlanCatalog {
  /** "name" (its highest version) or "name@version". */
  resolve(ref: string): Plan;
}

/**
 * Reads plan files (`*.yaml`, `*.yml`) from the shipped directory and the operator's. Files are read
 * again on every load, so an operator can drop a plan in without restarting the controller; a refused
 * file is reported with every problem it has, and never half-used.
 */
export class PlanLibrary {
  readonly #directories: readonly PlanDirectory[];
  readonly #limits: PlanLimits;

  constructor(directories: readonly PlanDirectory[], limits: PlanLimits = defaultPlanLimits) {
    this.#directories = directories;
    this.#limits = limits;
  }

  get directories(): readonly PlanDirectory[] {
    return this.#directories;
  }

  async load(): Promise<LoadedPlans> {
    const byKey = new Map<string, Plan>();
    const problems: { file: string; message: string }[] = [];
    for (const directory of this.#directories) {
      const seen = new Map<string, string>();
      for (const path of await planFiles(directory.path)) {
        const shown = displayPath(path);
        try {
          const info = await stat(path);
          if (info.size > defaults.provisioning.maxPlanFileBytes)
            throw new PlanError(shown, [
              `${shown}: is larger than ${defaults.provisioning.maxPlanFileBytes} bytes`,
            ]);
          const plan = parsePlan(await readFile(path, "utf8"), shown, this.#limits);
          const key = `${plan.name}@${plan.version}`;
          const earlier = seen.get(key);
          if (earlier !== undefined)
            throw new PlanError(shown, [`${shown}: plan ${key} is defined in ${earlier} already`]);
          seen.set(key, shown);
          byKey.set(key, plan);
        } catch (error) {
          if (error instanceof PlanError)
            for (const message of error.problems) problems.push({ file: shown, message });
          else problems.push({ file: shown, message: `${shown}: cannot read: ${(error as Error).message}` });
        }
      }
    }
    const plans = [...byKey.values()].sort((a, b) =>
      a.name === b.name ? compareVersions(b.version, a.version) : a.name < b.name ? -1 : 1,
    );
    return {
      plans,
      problems,
      resolve(ref) {
        const { name, version } = parsePlanRef(ref);
        const found = plans.find((p) => p.name === name && (version === undefined || p.version === version));
        if (found !== undefined) return found;
        const refused = problems.filter((p) =>
          new RegExp(`(^|/)${name.replace(/\./g, "\\.")}\\.ya?ml$`).test(p.file),
        );
        if (refused.length > 0) {
          throw new CorralError(
            "FAILED_PRECONDITION",
            `plan ${ref} could not be loaded:\n${refused.map((p) => p.message).join("\n")}`,
          );
        }
        const versions = plans.filter((p) => p.name === name).map((p) => p.version);
        throw new CorralError(
          "NOT_FOUND",
          versions.length > 0
            ? `plan ${name} has no version ${version} (there are ${versions.join(", ")})`
            : `there is no plan "${name}" (plans: ${[...new Set(plans.map((p) => p.name))].join(", ") || "none"})`,
          { details: { plan: ref } },
        );
      },
    };
  }
}

async function planFiles(directory: string): Promise<string[]> {
  const entries = await readdir(directory, { withFileTypes: true }).catch((error: NodeJS.ErrnoException) => {
    if (error.code === "ENOENT") return [];
    throw error;
  });
  return entries
    .filter((entry) => (entry.isFile() || entry.isSymbolicLink()) && /\.ya?ml$/.test(entry.name))
    .map((entry) => join(directory, entry.name))
    .sort();
}

/** Shipped plans as `plans/base.yaml`; operator plans by their full path. */
function displayPath(path: string): string {
  const inPackage = relative(join(shippedPlansDir, ".."), path);
  return inPackage.startsWith("plans/") ? inPackage : path;
}
