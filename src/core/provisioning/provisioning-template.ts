import { posix } from "node:path";
import { CorralError } from "../../base/errors.ts";
import { checkStep, isWithinRoots, type StepLimits, type StepSpec } from "./provisioning-step.ts";

/**
 * `{{parameter}}` substitution. Values only ever become whole argv elements or parts of them, paths and
 * file content: no shell ever reads them, so there is nothing to inject into. Values are still checked
 * (pattern, length, no NUL, no line breaks) so that a parameter cannot smuggle a second line into a
 * config file or a path.
 */
const reference = /\{\{\s*([A-Za-z_][A-Za-z0-9_.]*)\s*\}\}/g;

/** Facts of the node a step runs on, usable in any plan. */
export const builtinNames = ["node.id", "node.name", "node.address", "cluster.id", "job.id"] as const;
export type BuiltinName = (typeof builtinNames)[number];
export type Builtins = Readonly<Record<BuiltinName, string>>;

/** What substitution needs to know of a plan (provisioning-plan.ts's Plan has this shape). */
export interface TemplatePlan {
  readonly name: string;
  readonly parameters: readonly {
    readonly name: string;
    readonly required: boolean;
    readonly default?: string;
    readonly pattern?: string;
    readonly description: string;
    readonly list: boolean;
    readonly secret?: boolean;
  }[];
  readonly steps: readonly StepSpec[];
}

export function anchored(pattern: string): RegExp {
  return new RegExp(`^(?:${pattern})$`, "u");
}

/** A list parameter's items: separated by commas and/or white space. */
export function listItems(value: string): string[] {
  return value.split(/[\s,]+/).filter((item) => item !== "");
}

/** What a job record and step descriptions show for a secret parameter. */
export const maskedValue = "***";

/** The values with every secret one replaced by `maskedValue` (an empty secret stays empty). */
export function maskSecrets(
  plan: TemplatePlan,
  values: Readonly<Record<string, string>>,
): Record<string, string> {
  const secrets = new Set(plan.parameters.filter((p) => p.secret === true).map((p) => p.name));
  return Object.fromEntries(
    Object.entries(values).map(([name, value]) => [
      name,
      secrets.has(name) && value !== "" ? maskedValue : value,
    ]),
  );
}

export function templateRefs(text: string): string[] {
  return [...text.matchAll(reference)].map((match) => match[1] ?? "");
}

export interface ParameterLimits {
  readonly maxParameterBytes: number;
}

function checkValue(name: string, value: string, maxBytes: number): void {
  const field = `parameters.${name}`;
  if (value.includes("\0")) throw CorralError.invalidArgument(field, "contains a NUL character");
  if (/[\r\n]/.test(value)) throw CorralError.invalidArgument(field, "contains a line break");
  if (Buffer.byteLength(value) > maxBytes)
    throw CorralError.invalidArgument(field, `is longer than ${maxBytes} bytes`);
}

/**
 * The values a job runs with: the caller's, checked against the plan's declarations, plus defaults.
 * An undeclared parameter is refused (a typo must not be silently ignored).
 */
export function resolveParameters(
  plan: TemplatePlan,
  given: Readonly<Record<string, string>>,
  limits: ParameterLimits,
): Record<string, string> {
  const declared = new Map(plan.parameters.map((p) => [p.name, p]));
  for (const name of Object.keys(given)) {
    if (!declared.has(name)) {
      const names = [...declared.keys()];
      throw CorralError.invalidArgument(
        `parameters.${name}`,
        `plan ${plan.name} has no parameter "${name}" (${names.length === 0 ? "it takes none" : `it takes ${names.join(", ")}`})`,
      );
    }
  }
  const values: Record<string, string> = {};
  for (const parameter of plan.parameters) {
    const value = Object.hasOwn(given, parameter.name) ? given[parameter.name] : parameter.default;
    if (value === undefined) {
      if (parameter.required)
        throw CorralError.invalidArgument(
          `parameters.${parameter.name}`,
          `is required by plan ${plan.name}${parameter.description ? ` (${parameter.description})` : ""}`,
        );
      values[parameter.name] = "";
      continue;
    }
    checkValue(parameter.name, value, limits.maxParameterBytes);
    if (parameter.pattern !== undefined) {
      const pattern = anchored(parameter.pattern);
      for (const item of parameter.list ? listItems(value) : [value]) {
        if (!pattern.test(item))
          throw CorralError.invalidArgument(
            `parameters.${parameter.name}`,
            `"${item}" does not match ${parameter.pattern}`,
          );
      }
    }
    values[parameter.name] = value;
  }
  return values;
}

/** Fills in a plan's steps for one node. Every filled-in step is checked as the agent will check it. */
export function renderSteps(
  plan: TemplatePlan,
  values: Readonly<Record<string, string>>,
  builtins: Builtins,
  limits: StepLimits & ParameterLimits,
): StepSpec[] {
  for (const [name, value] of Object.entries(builtins)) checkValue(name, value, limits.maxParameterBytes);
  const lists = new Set(plan.parameters.filter((p) => p.list).map((p) => p.name));
  const lookup = (name: string): string => {
    if (Object.hasOwn(builtins, name)) return builtins[name as BuiltinName];
    if (!Object.hasOwn(values, name))
      throw CorralError.invalidArgument("plan", `{{${name}}} is not a parameter of plan ${plan.name}`);
    const value = values[name] ?? "";
    return lists.has(name) ? listItems(value).join(" ") : value;
  };
  const text = (value: string) => value.replace(reference, (_whole, name: string) => lookup(name));
  /** An argv element that is exactly one list parameter becomes one element per item. */
  const args = (argv: readonly string[]) =>
    argv.flatMap((arg) => {
      const only = /^\{\{\s*([A-Za-z_][A-Za-z0-9_]*)\s*\}\}$/.exec(arg)?.[1];
      return only !== undefined && lists.has(only) ? listItems(values[only] ?? "") : [text(arg)];
    });
  return plan.steps.map((step, index) => {
    const rendered = renderStep(step, text, args);
    const field = `step ${index + 1} ("${step.name}")`;
    if (step.kind === "file" && rendered.kind === "file")
      rendered.file.path = confinedPath(step.file.path, rendered.file, field);
    checkStep(rendered, field, limits);
    return rendered;
  });
}

/**
 * A file path filled in from parameters may hold no `.` or `..` segment (a value such as `../x` is how
 * a name becomes a way out), and, normalised, must stay in the step's roots. A refusal names the
 * parameters the path was built from. Answers the path as it is sent: normalised (no doubled slashes).
 */
function confinedPath(template: string, file: { path: string; roots?: string[] }, field: string): string {
  // A relative path is checkStep's to refuse, with its own message.
  if (!file.path.startsWith("/")) return file.path;
  const refs = [...new Set(templateRefs(template))];
  const blame = refs.length === 0 ? `${field}.file.path` : `parameters.${refs.join(", parameters.")}`;
  if (file.path.split("/").some((segment) => segment === ".." || segment === "."))
    throw CorralError.invalidArgument(
      blame,
      `${field} would write ${file.path}, a path with "." or ".." in it`,
    );
  const path = posix.normalize(file.path);
  if (file.roots !== undefined && !isWithinRoots(path, file.roots))
    throw CorralError.invalidArgument(
      blame,
      `${field} would write ${path}, outside the plan's roots (${file.roots.join(", ")})`,
    );
  return path;
}

function renderStep(
  step: StepSpec,
  text: (value: string) => string,
  args: (argv: readonly string[]) => string[],
): StepSpec {
  const name = text(step.name);
  switch (step.kind) {
    case "exec": {
      const e = step.exec;
      return {
        name,
        kind: "exec",
        exec: {
          argv: args(e.argv),
          ...(e.creates === undefined ? {} : { creates: text(e.creates) }),
          ...(e.unless === undefined ? {} : { unless: args(e.unless) }),
          ...(e.cwd === undefined ? {} : { cwd: text(e.cwd) }),
          ...(e.env === undefined
            ? {}
            : { env: Object.fromEntries(Object.entries(e.env).map(([k, v]) => [k, text(v)])) }),
          ...(e.timeoutMs === undefined ? {} : { timeoutMs: e.timeoutMs }),
          ...(e.root === true ? { root: true } : {}),
        },
      };
    }
    case "file":
      return {
        name,
        kind: "file",
        file: {
          path: text(step.file.path),
          content: text(step.file.content),
          mode: step.file.mode,
          ...(step.file.owner === undefined ? {} : { owner: text(step.file.owner) }),
          ...(step.file.roots === undefined ? {} : { roots: [...step.file.roots] }),
        },
      };
    case "systemd":
      return { name, kind: "systemd", systemd: { ...step.systemd, unit: text(step.systemd.unit) } };
    case "waitFor": {
      const c = step.waitFor.condition;
      const condition =
        "exec" in c ? { exec: args(c.exec) } : "file" in c ? { file: text(c.file) } : { tcp: text(c.tcp) };
      return { name, kind: "waitFor", waitFor: { ...step.waitFor, condition } };
    }
  }
}
