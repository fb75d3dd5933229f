import { posix } from "node:path";
import { LineCounter, parseDocument } from "yaml";
import { z } from "zod";
import { parseDuration } from "../../base/duration.ts";
import { CorralError } from "../../base/errors.ts";
import { defaults } from "../../defaults.ts";
import {
  checkOwner,
  checkTcpTarget,
  describeStep,
  isWithinRoots,
  type StepKind,
  type StepSpec,
  systemdActions,
} from "./provisioning-step.ts";
import { anchored, builtinNames, listItems, templateRefs } from "./provisioning-template.ts";

/**
 * Provisioning plans: named, versioned YAML files of steps. A plan is checked completely when it is
 * loaded, and every problem names the file, the line, the step and the field, so that an operator
 * finds a broken plan when the controller starts, not halfway through a rollout.
 *
 * ```yaml
 * name: base
 * version: 1.0.0
 * description: hostname and packages
 * parameters:
 *   hostname: { required: true, pattern: "[a-z0-9-]+" }
 *   packages: { list: true, default: "curl", pattern: "[a-z0-9][a-z0-9.+-]*" }
 * roots: [/etc/motd, /etc/myapp]   # where file steps may write (default: each path's literal directory)
 * steps:
 *   - name: set hostname
 *     exec: [hostnamectl, set-hostname, "{{hostname}}"]
 *   - file: { path: /etc/motd, content: "managed by corral\n", mode: "0644" }
 *   - systemd: { unit: ssh.service, action: enable }
 *   - waitFor: { tcp: "127.0.0.1:22", timeout: 30s, interval: 1s }
 * ```
 */
export interface PlanParameter {
  readonly name: string;
  readonly required: boolean;
  readonly default?: string;
  /** Anchored: the whole value (each item of a list) must match. */
  readonly pattern?: string;
  readonly description: string;
  readonly list: boolean;
  /** Kept out of job records and step descriptions (shown as `***`); still sent to the node. */
  readonly secret: boolean;
}

export interface Plan {
  readonly name: string;
  readonly version: string;
  readonly description: string;
  readonly parameters: readonly PlanParameter[];
  /** Steps as written: strings may hold `{{parameter}}`; durations and modes are already parsed. */
  readonly steps: readonly StepSpec[];
  /** `roots:` as declared (normalised): where its file steps may write; absent: each path's literal directory. */
  readonly roots?: readonly string[];
  /** The file it came from. */
  readonly source: string;
  /** What a cluster rollout (`corral cluster provision`) does when a node's run of this plan fails. */
  readonly onFailure?: PlanFailurePolicy;
}

/**
 * `onFailure:` of a plan: run the plan again on the failed nodes (steps already done report unchanged),
 * then, when it still fails, run the rollback plan on them with the same parameters.
 */
export interface PlanFailurePolicy {
  readonly retries: number;
  readonly retryDelayMs: number;
  /** A plan name (or name@version). */
  readonly rollback?: string;
}

export interface PlanLimits {
  readonly maxSteps: number;
  readonly maxParameters: number;
  readonly maxTimeoutMs: number;
  readonly maxFileContentBytes: number;
}

export const defaultPlanLimits: PlanLimits = {
  maxSteps: defaults.provisioning.maxSteps,
  maxParameters: defaults.provisioning.maxParameters,
  maxTimeoutMs: parseDuration(defaults.provisioning.maxStepTimeout),
  maxFileContentBytes: defaults.provisioning.maxFileContentBytes,
};

/** A plan file that cannot be used; `problems` are complete sentences that name file, line, step and field. */
export class PlanError extends CorralError {
  readonly file: string;
  readonly problems: readonly string[];
  constructor(file: string, problems: readonly string[]) {
    super("INVALID_ARGUMENT", problems.join("\n"), { details: { file } });
    this.file = file;
    this.problems = problems;
  }
}

export const planNamePattern = /^[a-z0-9][a-z0-9._-]{0,62}$/;
export const parameterNamePattern = /^[A-Za-z_][A-Za-z0-9_]{0,62}$/;
const versionPattern = /^[0-9A-Za-z][0-9A-Za-z.+_-]{0,31}$/;

const duration = z.union([z.string(), z.number()]).superRefine((value, ctx) => {
  try {
    parseDuration(value);
  } catch (error) {
    ctx.addIssue({ code: "custom", message: (error as CorralError).message.replace(/^duration: /, "") });
  }
});
const argv = z.array(z.string()).min(1, "needs at least the program to run");
const scalar = z.union([z.string(), z.number(), z.boolean()]).transform(String);

const parameterSchema = z
  .object({
    required: z.boolean().optional(),
    default: scalar.optional(),
    pattern: z.string().min(1).optional(),
    description: z.string().optional(),
    list: z.boolean().optional(),
    secret: z.boolean().optional(),
  })
  .strict();

const stepKindKeys = ["exec", "file", "systemd", "waitFor"] as const;

const stepSchema = z
  .object({
    name: z.string().min(1).max(200).optional(),
    exec: argv.optional(),
    creates: z.string().optional(),
    unless: argv.optional(),
    cwd: z.string().optional(),
    env: z.record(z.string(), scalar).optional(),
    timeout: duration.optional(),
    root: z.boolean().optional(),
    file: z
      .object({
        path: z.string().min(1),
        content: z.string(),
        mode: z.union([z.string(), z.number()]),
        owner: z.string().min(1).optional(),
      })
      .strict()
      .optional(),
    systemd: z
      .object({ unit: z.string().min(1), action: z.enum(systemdActions) })
      .strict()
      .optional(),
    waitFor: z
      .object({
        exec: argv.optional(),
        file: z.string().min(1).optional(),
        tcp: z.string().min(1).optional(),
        timeout: duration.optional(),
        interval: duration.optional(),
      })
      .strict()
      .optional(),
  })
  .strict();

const planSchema = z
  .object({
    name: z
      .string()
      .regex(planNamePattern, "must be lower case letters, digits, '.', '_' or '-' (at most 63)"),
    version: z.union([z.string(), z.number()]).transform(String),
    description: z.string().optional(),
    parameters: z.record(z.string(), parameterSchema.nullable()).optional(),
    roots: z.array(z.string().min(1)).min(1).max(32).optional(),
    steps: z.array(z.unknown()).min(1, "a plan needs at least one step"),
    onFailure: z
      .object({
        retries: z.number().int().min(0).max(10).optional(),
        retryDelay: duration.optional(),
        rollback: z
          .string()
          .regex(/^[a-z0-9][a-z0-9._-]{0,62}(@[0-9A-Za-z][0-9A-Za-z.+_-]{0,31})?$/, "must name a plan")
          .optional(),
      })
      .strict()
      .optional(),
  })
  .strict();

type RawStep = z.infer<typeof stepSchema>;

/** Reads one plan file's text. Throws a PlanError listing every problem found. */
export function parsePlan(text: string, source: string, limits: PlanLimits = defaultPlanLimits): Plan {
  const lines = new LineCounter();
  const document = parseDocument(text, { lineCounter: lines, prettyErrors: false, uniqueKeys: true });
  if (document.errors.length > 0) {
    throw new PlanError(
      source,
      document.errors.map((e) => `${source}:${lines.linePos(e.pos[0]).line}: not valid YAML: ${e.message}`),
    );
  }
  const lineOf = (path: readonly PropertyKey[]): number | undefined => {
    for (let n = path.length; n >= 0; n--) {
      const node = document.getIn(path.slice(0, n) as unknown[], true) as { range?: [number] } | undefined;
      if (node?.range !== undefined) return lines.linePos(node.range[0]).line;
    }
    return undefined;
  };
  const raw: unknown = document.toJS();
  const problems: string[] = [];
  const at = (path: readonly PropertyKey[], message: string) => {
    const line = lineOf(path);
    problems.push(`${source}${line === undefined ? "" : `:${line}`}: ${message}`);
  };

  const parsed = planSchema.safeParse(raw ?? {}, { reportInput: true });
  if (!parsed.success) {
    for (const issue of parsed.error.issues) at(issue.path, `${fieldText(issue.path)}: ${issueText(issue)}`);
    throw new PlanError(source, problems);
  }
  const file = parsed.data;
  if (!versionPattern.test(file.version))
    at(["version"], `version: "${file.version}" is not a version such as 1 or 1.2.0`);

  const parameters: PlanParameter[] = [];
  const entries = Object.entries(file.parameters ?? {});
  if (entries.length > limits.maxParameters)
    at(["parameters"], `parameters: more than ${limits.maxParameters} parameters`);
  for (const [name, spec] of entries) {
    const path = ["parameters", name];
    if (!parameterNamePattern.test(name)) {
      at(
        path,
        `parameters.${name}: is not a parameter name (letters, digits and _, not starting with a digit)`,
      );
      continue;
    }
    const parameter: PlanParameter = {
      name,
      required: spec?.required ?? false,
      ...(spec?.default === undefined ? {} : { default: spec.default }),
      ...(spec?.pattern === undefined ? {} : { pattern: spec.pattern }),
      description: spec?.description ?? "",
      list: spec?.list ?? false,
      secret: spec?.secret ?? false,
    };
    if (parameter.required && parameter.default !== undefined)
      at(path, `parameters.${name}: is required and has a default; keep one of the two`);
    if (parameter.pattern !== undefined) {
      try {
        const pattern = anchored(parameter.pattern);
        if (parameter.default !== undefined) {
          const values = parameter.list ? listItems(parameter.default) : [parameter.default];
          for (const value of values) {
            if (!pattern.test(value))
              at([...path, "default"], `parameters.${name}.default: "${value}" does not match the pattern`);
          }
        }
      } catch (error) {
        at(
          [...path, "pattern"],
          `parameters.${name}.pattern: not a regular expression: ${(error as Error).message}`,
        );
      }
    }
    parameters.push(parameter);
  }

  const roots = file.roots?.map((root, i) => {
    if (!root.startsWith("/") || root.includes("{{") || root.includes("\0"))
      at(["roots", i], `roots[${i}]: "${root}" is not an absolute path (roots take no parameters)`);
    const normalised = posix.normalize(root).replace(/(.)\/+$/, "$1");
    // `roots: [/]` is allowed, written out: an operator's explicit "this plan may write anywhere".
    return normalised;
  });

  if (file.steps.length > limits.maxSteps) at(["steps"], `steps: more than ${limits.maxSteps} steps`);
  const known = new Set([...parameters.map((p) => p.name), ...builtinNames]);
  const steps: StepSpec[] = [];
  file.steps.forEach((value, index) => {
    const label = stepLabel(index, value);
    const stepAt = (path: readonly PropertyKey[], message: string) =>
      at(["steps", index, ...path], `${label}: ${path.length === 0 ? "" : `${fieldText(path)}: `}${message}`);
    const result = stepSchema.safeParse(value, { reportInput: true });
    if (!result.success) {
      for (const issue of result.error.issues) stepAt(issue.path, issueText(issue));
      return;
    }
    const parsed = toStep(result.data, index, limits, stepAt);
    if (parsed === undefined) return;
    const step = parsed.kind === "file" ? withRoots(parsed, roots, stepAt) : parsed;
    for (const [path, text] of templateStrings(result.data)) {
      for (const ref of templateRefs(text)) {
        if (!known.has(ref))
          stepAt(path, `{{${ref}}} is not a parameter of this plan (declared: ${[...known].join(", ")})`);
      }
    }
    steps.push(step);
  });
  if (problems.length > 0) throw new PlanError(source, problems);
  return {
    name: file.name,
    version: file.version,
    description: file.description ?? "",
    parameters,
    steps,
    source,
    ...(roots === undefined ? {} : { roots }),
    ...(file.onFailure === undefined
      ? {}
      : {
          onFailure: {
            retries: file.onFailure.retries ?? 0,
            retryDelayMs: parseDuration(file.onFailure.retryDelay ?? 0),
            ...(file.onFailure.rollback === undefined ? {} : { rollback: file.onFailure.rollback }),
          },
        }),
  };
}

type At = (path: readonly PropertyKey[], message: string) => void;

/**
 * Where a file step may write: the plan's roots, or else the directory its path names before the first
 * parameter (`/etc/myapp/{{name}}.conf` → `/etc/myapp`; a path without parameters: itself). A path that
 * starts with a parameter lets the caller choose the directory by design (`{{dir}}/x`); without roots it
 * is only kept free of `.` and `..` when filled in. A literal path outside declared roots is a mistake
 * in the plan, found when it loads.
 */
function withRoots(
  step: StepSpec & { kind: "file" },
  roots: readonly string[] | undefined,
  at: At,
): StepSpec {
  const path = step.file.path;
  const templated = path.indexOf("{{");
  if (roots !== undefined) {
    if (templated === -1 && !isWithinRoots(posix.normalize(path), roots))
      at(["file", "path"], `"${path}" is outside the plan's roots (${roots.join(", ")})`);
    return { ...step, file: { ...step.file, roots: [...roots] } };
  }
  if (templated === -1) return { ...step, file: { ...step.file, roots: [posix.normalize(path)] } };
  const literal = path.slice(0, templated);
  const directory = posix
    .normalize(literal.slice(0, literal.lastIndexOf("/") + 1) || "/")
    .replace(/(.)\/+$/, "$1");
  if (directory === "/" || !directory.startsWith("/")) return step;
  return { ...step, file: { ...step.file, roots: [directory] } };
}

function toStep(raw: RawStep, index: number, limits: PlanLimits, at: At): StepSpec | undefined {
  const kinds = stepKindKeys.filter((key) => raw[key] !== undefined);
  if (kinds.length !== 1) {
    at(
      [],
      kinds.length === 0
        ? "needs one of exec, file, systemd, waitFor"
        : `has ${kinds.join(" and ")}; a step does one thing`,
    );
    return undefined;
  }
  const kind = kinds[0] as StepKind;
  for (const key of ["creates", "unless", "cwd", "env"] as const) {
    if (raw[key] !== undefined && kind !== "exec") at([key], `only an exec step takes ${key}`);
  }
  if (raw.root !== undefined && kind !== "exec" && raw.waitFor?.exec === undefined)
    at(["root"], "only an exec step or a waitFor exec condition runs a program as root");
  if (raw.timeout !== undefined && kind !== "exec" && kind !== "systemd")
    at(
      ["timeout"],
      kind === "waitFor" ? "a waitFor step takes its timeout inside waitFor" : "a file step has no timeout",
    );
  const timeout = (value: string | number | undefined, path: readonly PropertyKey[]) => {
    if (value === undefined) return undefined;
    const ms = parseDuration(value);
    if (ms <= 0) at(path, "must be longer than 0");
    if (ms > limits.maxTimeoutMs) at(path, `must be at most ${limits.maxTimeoutMs / 1000}s`);
    return ms;
  };
  const absolute = (value: string | undefined, path: readonly PropertyKey[]) => {
    if (value !== undefined && !value.startsWith("/") && !value.startsWith("{{"))
      at(path, `"${value}" is not an absolute path`);
  };
  const name = raw.name ?? defaultStepName(raw, index);
  const timeoutMs = timeout(raw.timeout, ["timeout"]);
  switch (kind) {
    case "exec": {
      const exec = raw.exec ?? [];
      absolute(raw.creates, ["creates"]);
      absolute(raw.cwd, ["cwd"]);
      return {
        name,
        kind,
        exec: {
          argv: exec,
          ...(raw.creates === undefined ? {} : { creates: raw.creates }),
          ...(raw.unless === undefined ? {} : { unless: raw.unless }),
          ...(raw.cwd === undefined ? {} : { cwd: raw.cwd }),
          ...(raw.env === undefined ? {} : { env: raw.env }),
          ...(timeoutMs === undefined ? {} : { timeoutMs }),
          ...(raw.root === true ? { root: true } : {}),
        },
      };
    }
    case "file": {
      const file = raw.file;
      if (file === undefined) return undefined;
      absolute(file.path, ["file", "path"]);
      const mode = parseMode(file.mode);
      if (mode === undefined)
        at(
          ["file", "mode"],
          `${JSON.stringify(file.mode)} is not a mode; write it quoted in octal, e.g. "0644"`,
        );
      if (Buffer.byteLength(file.content) > limits.maxFileContentBytes)
        at(["file", "content"], `is longer than ${limits.maxFileContentBytes} bytes`);
      if (file.owner !== undefined && !file.owner.includes("{{")) {
        try {
          checkOwner(file.owner, "owner");
        } catch (error) {
          at(["file", "owner"], (error as Error).message.replace(/^owner: /, ""));
        }
      }
      return {
        name,
        kind,
        file: {
          path: file.path,
          content: file.content,
          mode: mode ?? 0o644,
          ...(file.owner === undefined ? {} : { owner: file.owner }),
        },
      };
    }
    case "systemd": {
      const systemd = raw.systemd;
      if (systemd === undefined) return undefined;
      return {
        name,
        kind,
        systemd: {
          unit: systemd.unit,
          action: systemd.action,
          ...(timeoutMs === undefined ? {} : { timeoutMs }),
        },
      };
    }
    case "waitFor": {
      const wait = raw.waitFor;
      if (wait === undefined) return undefined;
      const conditions = (["exec", "file", "tcp"] as const).filter((key) => wait[key] !== undefined);
      if (conditions.length !== 1) {
        at(
          ["waitFor"],
          conditions.length === 0
            ? "needs one of exec, file, tcp"
            : `has ${conditions.join(" and ")}; wait for one thing`,
        );
        return undefined;
      }
      absolute(wait.file, ["waitFor", "file"]);
      if (wait.tcp !== undefined && !wait.tcp.includes("{{")) {
        try {
          checkTcpTarget(wait.tcp, "tcp");
        } catch (error) {
          at(["waitFor", "tcp"], (error as Error).message.replace(/^tcp: /, ""));
        }
      }
      const timeoutMs =
        timeout(wait.timeout, ["waitFor", "timeout"]) ?? parseDuration(defaults.provisioning.waitForTimeout);
      const intervalMs =
        timeout(wait.interval, ["waitFor", "interval"]) ??
        parseDuration(defaults.provisioning.waitForInterval);
      const condition =
        wait.exec !== undefined
          ? { exec: wait.exec }
          : wait.file !== undefined
            ? { file: wait.file }
            : { tcp: wait.tcp ?? "" };
      return {
        name,
        kind,
        waitFor: { condition, timeoutMs, intervalMs, ...(raw.root === true ? { root: true } : {}) },
      };
    }
  }
}

/** Every templated string of a step, with its path (for messages). */
function templateStrings(raw: RawStep): [PropertyKey[], string][] {
  const out: [PropertyKey[], string][] = [];
  const add = (path: PropertyKey[], value: string | undefined): void => {
    if (value !== undefined) out.push([path, value]);
  };
  raw.exec?.forEach((arg, i) => {
    add(["exec", i], arg);
  });
  add(["creates"], raw.creates);
  raw.unless?.forEach((arg, i) => {
    add(["unless", i], arg);
  });
  add(["cwd"], raw.cwd);
  for (const [key, value] of Object.entries(raw.env ?? {})) add(["env", key], value);
  if (raw.file !== undefined) {
    add(["file", "path"], raw.file.path);
    add(["file", "content"], raw.file.content);
    add(["file", "owner"], raw.file.owner);
  }
  add(["systemd", "unit"], raw.systemd?.unit);
  raw.waitFor?.exec?.forEach((arg, i) => {
    add(["waitFor", "exec", i], arg);
  });
  add(["waitFor", "file"], raw.waitFor?.file);
  add(["waitFor", "tcp"], raw.waitFor?.tcp);
  return out;
}

function defaultStepName(raw: RawStep, index: number): string {
  if (raw.exec !== undefined) return `exec ${raw.exec[0]}`;
  if (raw.file !== undefined) return `file ${raw.file.path}`;
  if (raw.systemd !== undefined) return `${raw.systemd.action} ${raw.systemd.unit}`;
  if (raw.waitFor !== undefined) return "wait";
  return `step ${index + 1}`;
}

function stepLabel(index: number, value: unknown): string {
  const name =
    typeof value === "object" && value !== null && typeof (value as { name?: unknown }).name === "string"
      ? ` ("${(value as { name: string }).name}")`
      : "";
  return `step ${index + 1}${name}`;
}

function fieldText(path: readonly PropertyKey[]): string {
  return (
    path
      .map((part, i) =>
        typeof part === "number" ? `[${part}]` : i === 0 ? String(part) : `.${String(part)}`,
      )
      .join("") || "(top level)"
  );
}

function issueText(issue: z.core.$ZodIssue): string {
  if (issue.code === "unrecognized_keys")
    return `${issue.keys.map((k) => `"${k}"`).join(", ")} is not a known key`;
  const input = (issue as { input?: unknown }).input;
  if (input === undefined && issue.code !== "custom") return "is required";
  if (
    issue.code === "invalid_type" &&
    issue.expected === "string" &&
    (typeof input === "boolean" || typeof input === "number")
  )
    return `must be a string; YAML read ${String(input)} as a ${typeof input}, so quote it: "${String(input)}"`;
  return issue.message;
}

/** "0644", "644", "0o644" → 0o644; numbers are refused (YAML reads 0644 as decimal 644). */
export function parseMode(value: string | number): number | undefined {
  if (typeof value !== "string") return undefined;
  const match = /^(?:0o?)?([0-7]{3,4})$/.exec(value.trim());
  return match?.[1] === undefined ? undefined : Number.parseInt(match[1], 8);
}

/** "name" or "name@version". */
export function parsePlanRef(ref: string): { name: string; version?: string } {
  const at = ref.lastIndexOf("@");
  const name = at === -1 ? ref : ref.slice(0, at);
  const version = at === -1 ? undefined : ref.slice(at + 1);
  if (!planNamePattern.test(name))
    throw CorralError.invalidArgument("plan", `"${ref}" is not a plan name (or name@version)`);
  if (version !== undefined && !versionPattern.test(version))
    throw CorralError.invalidArgument("plan", `"${version}" is not a version`);
  return version === undefined ? { name } : { name, version };
}

/** Compares versions part by part, numerically where both parts are numbers ("1.10" > "1.9"). */
export function compareVersions(a: string, b: string): number {
  const pa = a.split(/[.+_-]/);
  const pb = b.split(/[.+_-]/);
  for (let i = 0; i < Math.max(pa.length, pb.length); i++) {
    const x = pa[i] ?? "";
    const y = pb[i] ?? "";
    if (x === y) continue;
    if (/^\d+$/.test(x) && /^\d+$/.test(y)) return Number(x) - Number(y);
    return x < y ? -1 : 1;
  }
  return 0;
}

/** A step of a plan, as ListPlans shows it. */
export function summarizeStep(step: StepSpec): { name: string; kind: StepKind; description: string } {
  return { name: step.name, kind: step.kind, description: describeStep(step) };
}
