import { isAbsolute, normalize } from "node:path";
import { CorralError } from "../base/errors.ts";
import { printable } from "../security/exec-allow-list.ts";
import type { PipelineGraph } from "./config.ts";

/**
 * Which programs a node lets pipeline `process` blocks run. Like ExecuteCommand's allow-list, the
 * node's own configuration decides, never the request: a program is named by its absolute path (a
 * bare name would be looked up in a PATH the pipeline's `env` can set), and an empty list — the
 * default — means the node runs no process blocks at all.
 */
export interface ProcessPolicy {
  /** Absolute, normalized program paths. */
  readonly allow: ReadonlySet<string>;
  /** The setting that holds the list, named in refusals so an admin knows what to change. */
  readonly setting: string;
}

/**
 * Environment variables that make any program load or run code of the caller's choosing (the dynamic
 * loader's preload and search paths, interpreters' start-up hooks). Allowing a program must not
 * allow whatever such a variable points at.
 */
const injectingEnv = [
  /^LD_/,
  /^DYLD_/,
  /^GCONV_PATH$/,
  /^NODE_OPTIONS$/,
  /^NODE_PATH$/,
  /^PYTHON(STARTUP|PATH|HOME)$/,
  /^PERL5?(LIB|OPT)$/,
  /^RUBY(LIB|OPT)$/,
  /^BASH_ENV$/,
  /^ENV$/,
];

/** Validates a configured list (absolute, normalized paths) and makes it a policy. */
export function processPolicy(programs: readonly string[], setting: string): ProcessPolicy {
  for (const program of programs) {
    if (!isAbsolute(program) || normalize(program) !== program)
      throw CorralError.invalidArgument(
        setting,
        `"${printable(program)}" must be an absolute, normalized path of a program`,
      );
  }
  return { allow: new Set(programs), setting };
}

/**
 * Refuses (PERMISSION_DENIED, naming the block) a graph whose process blocks this node does not
 * allow: the node allows none, a program not on its list, or an environment that injects code.
 */
export function checkProcessBlocks(graph: PipelineGraph, policy: ProcessPolicy): void {
  for (const block of graph.blocks) {
    const s = block.settings;
    if (s.type !== "process") continue;
    const at = `json_config.plumr_config.pipeline.${printable(block.name)}.process`;
    if (policy.allow.size === 0)
      throw new CorralError(
        "PERMISSION_DENIED",
        `${at}: this node runs no process blocks (its ${policy.setting} list is empty); an admin of the node can allow programs there`,
        { details: { field: "json_config", "denied-by": "process-allow-list" } },
      );
    const program = s.argv[0] ?? "";
    if (!policy.allow.has(program))
      throw new CorralError(
        "PERMISSION_DENIED",
        `${at}.argv[0]: "${printable(program)}" is not on this node's ${policy.setting} list (allowed: ${[...policy.allow].map(printable).join(", ")}); name an allowed program by its absolute path`,
        { details: { field: "json_config", "denied-by": "process-allow-list" } },
      );
    for (const key of Object.keys(s.env)) {
      if (injectingEnv.some((pattern) => pattern.test(key)))
        throw new CorralError(
          "PERMISSION_DENIED",
          `${at}.env.${printable(key)}: may not be set; it would make the allowed program load other code`,
          { details: { field: "json_config", "denied-by": "process-allow-list" } },
        );
    }
  }
}

/**
 * Whether a pipeline config has a `process` block, read from the JSON alone (also for a config of a
 * newer version the node would store without parsing its blocks). Invalid JSON has none: the node
 * refuses it anyway.
 */
export function hasProcessBlock(jsonConfig: string): boolean {
  let root: unknown;
  try {
    root = JSON.parse(jsonConfig);
  } catch {
    return false;
  }
  const pipeline = (root as { plumr_config?: { pipeline?: unknown } } | null)?.plumr_config?.pipeline;
  if (typeof pipeline !== "object" || pipeline === null) return false;
  return Object.values(pipeline).some(
    (block) => typeof block === "object" && block !== null && Object.hasOwn(block, "process"),
  );
}
