import { isAbsolute, posix } from "node:path";
import { CorralError } from "../../base/errors.ts";

/**
 * A provisioning step with every parameter filled in: what the controller sends an agent and the agent
 * runs. Nothing here is ever handed to a shell; argv goes to execve as it is.
 */
export const stepKinds = ["exec", "file", "systemd", "waitFor"] as const;
export type StepKind = (typeof stepKinds)[number];

export const systemdActions = ["enable", "disable", "start", "stop", "restart"] as const;
export type SystemdAction = (typeof systemdActions)[number];

export interface ExecSpec {
  argv: string[];
  /** Unchanged (not run) when this path exists. */
  creates?: string;
  /** Unchanged (not run) when this command exits 0. */
  unless?: string[];
  cwd?: string;
  env?: Record<string, string>;
  timeoutMs?: number;
  /**
   * The plan asks for root (package installs, host settings). Without it the step runs as the node's
   * unprivileged provisioning user; an agent started with --no-root-steps refuses such steps.
   */
  root?: boolean;
}

export interface FileSpec {
  path: string;
  content: string;
  /** Permission bits (0 to 0o7777). */
  mode: number;
  /** "user", "user:group", "uid" or "uid:gid". */
  owner?: string;
  /**
   * Directories (or single files) the path must stay in: the plan's `roots:`, or the directory the
   * path's literal part names. Checked on the controller when the step is filled in and again on the
   * node when it writes, with symlinks resolved. Absent: a step from before roots (no parameter in its
   * path was confined then either).
   */
  roots?: string[];
}

export interface SystemdSpec {
  unit: string;
  action: SystemdAction;
  timeoutMs?: number;
}

export type WaitCondition = { exec: string[] } | { file: string } | { tcp: string };

export interface WaitForSpec {
  condition: WaitCondition;
  timeoutMs: number;
  intervalMs: number;
  /** An exec condition runs as root (see ExecSpec.root). */
  root?: boolean;
}

export type StepSpec =
  | { name: string; kind: "exec"; exec: ExecSpec }
  | { name: string; kind: "file"; file: FileSpec }
  | { name: string; kind: "systemd"; systemd: SystemdSpec }
  | { name: string; kind: "waitFor"; waitFor: WaitForSpec };

/** What a step reports: the statuses a job shows per node and step. */
export const stepStatuses = ["pending", "running", "succeeded", "failed", "skipped", "unchanged"] as const;
export type StepStatus = (typeof stepStatuses)[number];

/**
 * What a step runner reports: a step started, produced output, or ended. A domain type, because the
 * controller's dispatcher reads it from runners on nodes and in its own process alike.
 */
export interface StepEvent {
  readonly index: number;
  readonly status: StepStatus;
  readonly output?: string;
  readonly outputTruncated?: boolean;
  readonly message?: string;
  readonly exitCode?: number;
  readonly at: number;
}

/** systemd unit names: no leading dash (it would read as an option), no path, no spaces. */
const unitName = /^[A-Za-z0-9@_:.\\-]+$/;
const envName = /^[A-Za-z_][A-Za-z0-9_]*$/;
const ownerPart = /^[A-Za-z0-9_][A-Za-z0-9_.-]*\$?$/;

/** Text a step may carry: no NUL anywhere (execve and paths cannot hold one). */
function checkText(
  value: string,
  field: string,
  options: { multiline?: boolean; empty?: boolean } = {},
): void {
  if (!options.empty && value === "") throw CorralError.invalidArgument(field, "is empty");
  if (value.includes("\0")) throw CorralError.invalidArgument(field, "contains a NUL character");
  if (!options.multiline && /[\r\n]/.test(value))
    throw CorralError.invalidArgument(field, "contains a line break");
}

/** Whether `path` (normalised, absolute) is one of `roots` or lies below one. */
export function isWithinRoots(path: string, roots: readonly string[]): boolean {
  return roots.some((root) => path === root || path.startsWith(root === "/" ? "/" : `${root}/`));
}

/** A file path must be written as it is meant: no `..`, `.` or doubled slashes left after filling in. */
export function checkConfined(path: string, roots: readonly string[], field: string): void {
  if (posix.normalize(path) !== path)
    throw CorralError.invalidArgument(field, `"${path}" is not a normalised path (no "..", "." or "//")`);
  if (!isWithinRoots(path, roots))
    throw CorralError.invalidArgument(field, `"${path}" is outside the plan's roots (${roots.join(", ")})`);
}

function checkPath(value: string, field: string): void {
  checkText(value, field);
  if (!isAbsolute(value)) throw CorralError.invalidArgument(field, `"${value}" is not an absolute path`);
}

function checkArgv(argv: readonly string[], field: string): void {
  if (argv.length === 0)
    throw CorralError.invalidArgument(field, "is empty; give the program and its arguments");
  argv.forEach((arg, i) => {
    checkText(arg, `${field}[${i}]`, { empty: i > 0 });
  });
  if ((argv[0] ?? "").startsWith("-"))
    throw CorralError.invalidArgument(`${field}[0]`, `"${argv[0]}" is not a program name`);
}

function checkTimeout(value: number | undefined, field: string, maxMs: number): void {
  if (value === undefined) return;
  if (!Number.isInteger(value) || value <= 0)
    throw CorralError.invalidArgument(field, "must be a positive number of milliseconds");
  if (value > maxMs) throw CorralError.invalidArgument(field, `must be at most ${maxMs} ms`);
}

export function checkTcpTarget(value: string, field: string): void {
  checkText(value, field);
  const match = /^(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]+):(\d{1,5})$/.exec(value);
  const port = Number(match?.[2]);
  if (match === null || port < 1 || port > 65_535)
    throw CorralError.invalidArgument(field, `"${value}" is not host:port`);
}

export function checkOwner(value: string, field: string): void {
  const parts = value.split(":");
  if (parts.length > 2 || parts.some((part) => !ownerPart.test(part)))
    throw CorralError.invalidArgument(field, `"${value}" is not user, user:group, uid or uid:gid`);
}

export interface StepLimits {
  readonly maxTimeoutMs: number;
  readonly maxFileContentBytes: number;
}

/**
 * Checks a filled-in step: the controller before it sends a step, the agent again before it runs one
 * (it trusts its controller, but a malformed step must fail cleanly, not half-run). `field` prefixes
 * every message, e.g. `steps[2] ("write config")`.
 */
export function checkStep(step: StepSpec, field: string, limits: StepLimits): void {
  checkText(step.name, `${field}.name`);
  switch (step.kind) {
    case "exec": {
      const exec = step.exec;
      checkArgv(exec.argv, `${field}.exec`);
      if (exec.creates !== undefined) checkPath(exec.creates, `${field}.creates`);
      if (exec.unless !== undefined) checkArgv(exec.unless, `${field}.unless`);
      if (exec.cwd !== undefined) checkPath(exec.cwd, `${field}.cwd`);
      for (const [name, value] of Object.entries(exec.env ?? {})) {
        if (!envName.test(name))
          throw CorralError.invalidArgument(`${field}.env`, `"${name}" is not an environment variable name`);
        checkText(value, `${field}.env.${name}`, { empty: true });
      }
      checkTimeout(exec.timeoutMs, `${field}.timeout`, limits.maxTimeoutMs);
      return;
    }
    case "file": {
      const file = step.file;
      checkPath(file.path, `${field}.file.path`);
      if (file.roots !== undefined) {
        for (const [i, root] of file.roots.entries()) checkPath(root, `${field}.file.roots[${i}]`);
        checkConfined(file.path, file.roots, `${field}.file.path`);
      }
      checkText(file.content, `${field}.file.content`, { multiline: true, empty: true });
      if (Buffer.byteLength(file.content) > limits.maxFileContentBytes)
        throw CorralError.invalidArgument(
          `${field}.file.content`,
          `is longer than ${limits.maxFileContentBytes} bytes`,
        );
      if (!Number.isInteger(file.mode) || file.mode < 0 || file.mode > 0o7777)
        throw CorralError.invalidArgument(
          `${field}.file.mode`,
          "must be permission bits between 0000 and 7777",
        );
      if (file.owner !== undefined) checkOwner(file.owner, `${field}.file.owner`);
      return;
    }
    case "systemd": {
      const systemd = step.systemd;
      checkText(systemd.unit, `${field}.systemd.unit`);
      if (!unitName.test(systemd.unit) || systemd.unit.startsWith("-"))
        throw CorralError.invalidArgument(`${field}.systemd.unit`, `"${systemd.unit}" is not a unit name`);
      if (!systemdActions.includes(systemd.action))
        throw CorralError.invalidArgument(
          `${field}.systemd.action`,
          `"${systemd.action}" is not one of ${systemdActions.join(", ")}`,
        );
      checkTimeout(systemd.timeoutMs, `${field}.timeout`, limits.maxTimeoutMs);
      return;
    }
    case "waitFor": {
      const wait = step.waitFor;
      const condition = wait.condition;
      if ("exec" in condition) checkArgv(condition.exec, `${field}.waitFor.exec`);
      else if ("file" in condition) checkPath(condition.file, `${field}.waitFor.file`);
      else checkTcpTarget(condition.tcp, `${field}.waitFor.tcp`);
      checkTimeout(wait.timeoutMs, `${field}.waitFor.timeout`, limits.maxTimeoutMs);
      checkTimeout(wait.intervalMs, `${field}.waitFor.interval`, limits.maxTimeoutMs);
      return;
    }
  }
}

const quote = (arg: string) => (/^[A-Za-z0-9_@%+=:,./-]+$/.test(arg) ? arg : JSON.stringify(arg));
export const argvText = (argv: readonly string[]) => argv.map(quote).join(" ");

/** One line saying what a step does, for dry runs, listings and logs. */
export function describeStep(step: StepSpec): string {
  switch (step.kind) {
    case "exec": {
      const guards = [
        step.exec.creates === undefined ? "" : ` unless ${step.exec.creates} exists`,
        step.exec.unless === undefined ? "" : ` unless \`${argvText(step.exec.unless)}\` succeeds`,
      ].join("");
      return `run \`${argvText(step.exec.argv)}\`${guards}`;
    }
    case "file": {
      const bytes = Buffer.byteLength(step.file.content);
      const owner = step.file.owner === undefined ? "" : `, owner ${step.file.owner}`;
      return `write ${step.file.path} (${bytes} bytes, mode ${formatMode(step.file.mode)}${owner}) unless it is already so`;
    }
    case "systemd":
      return `systemctl ${step.systemd.action} ${step.systemd.unit}`;
    case "waitFor": {
      const c = step.waitFor.condition;
      const what =
        "exec" in c
          ? `\`${argvText(c.exec)}\` succeeds`
          : "file" in c
            ? `${c.file} exists`
            : `${c.tcp} accepts TCP`;
      return `wait until ${what} (at most ${Math.round(step.waitFor.timeoutMs / 1000)}s)`;
    }
  }
}

export function formatMode(mode: number): string {
  return `0${mode.toString(8).padStart(3, "0")}`;
}
