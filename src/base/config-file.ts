import { readFile } from "node:fs/promises";
import { parse as parseYaml } from "yaml";
import { type ZodType, z } from "zod";
import { parseHostPort } from "./address.ts";
import { parseDuration } from "./duration.ts";
import { CorralError } from "./errors.ts";

/**
 * What the controller's and the agent's YAML files share: reading one, the fields that take an address
 * or a human duration, and one way of refusing a file — every problem named by its key, an unknown key
 * as such, so `corral … --config` can exit 2 with a message a person can act on.
 */

/** A `host:port` field, checked as the listeners will read it. */
export const addressField = (field: string) =>
  z.string().superRefine((value, ctx) => {
    try {
      parseHostPort(value, field);
    } catch (error) {
      ctx.addIssue({ code: "custom", message: (error as Error).message });
    }
  });

/** A human duration field ("30s", "5m"). */
export const durationField = (field: string) =>
  z.string().superRefine((value, ctx) => {
    try {
      parseDuration(value, field);
    } catch (error) {
      ctx.addIssue({ code: "custom", message: (error as Error).message });
    }
  });

/** The file's YAML (empty: `{}`); NOT_FOUND if it cannot be read, INVALID_ARGUMENT if it is not YAML. */
export async function readYamlFile(path: string): Promise<unknown> {
  let text: string;
  try {
    text = await readFile(path, "utf8");
  } catch (error) {
    throw new CorralError("NOT_FOUND", `cannot read config file ${path}: ${(error as Error).message}`, {
      cause: error,
    });
  }
  try {
    return parseYaml(text) ?? {};
  } catch (error) {
    throw new CorralError("INVALID_ARGUMENT", `${path} is not valid YAML: ${(error as Error).message}`, {
      cause: error,
    });
  }
}

/** `raw` as `schema` has it, or INVALID_ARGUMENT naming every problem by its key. */
export function parseConfigFile<T>(schema: ZodType<T>, raw: unknown, source: string): T {
  const parsed = schema.safeParse(raw);
  if (parsed.success) return parsed.data;
  const problems = parsed.error.issues.map((issue) => {
    const key = [...issue.path, ...(issue.code === "unrecognized_keys" ? [issue.keys.join(", ")] : [])].join(
      ".",
    );
    const what = issue.code === "unrecognized_keys" ? "is not a known key" : issue.message;
    return `${key || "(top level)"}: ${what}`;
  });
  throw new CorralError("INVALID_ARGUMENT", `${source}: ${problems.join("; ")}`);
}
