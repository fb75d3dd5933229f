import { isAbsolute, normalize } from "node:path";
import { defaults } from "../defaults.ts";

/**
 * The allow-list of ExecuteCommand: every command the agent will run, and the exact arguments each may
 * take. A request names a command (never a path) and gives its arguments as argv; nothing is ever
 * handed to a shell. Anything the rules do not allow is refused.
 */

/** Checks one value (an option's value or a positional argument); returns the problem, if any. */
export type ValueCheck = (value: string) => string | undefined;

export interface OptionRule {
  /** The option takes a value, as the next argument or as `--long=value`; it must match this. */
  readonly value?: RegExp;
  readonly check?: ValueCheck;
}

export interface PositionalRule {
  readonly pattern: RegExp;
  readonly check?: ValueCheck;
  readonly min?: number;
  readonly max: number;
}

export interface ArgRules {
  /** The most arguments a request may give (before the agent adds any). */
  readonly maxCount: number;
  /** Always put before the request's arguments. */
  readonly fixedPrefix?: readonly string[];
  /** Always put after the request's arguments (e.g. `--no-pager`). */
  readonly fixedSuffix?: readonly string[];
  /** Options allowed, by their exact spelling (`-h`, `--human`); an option with a rule takes a value. */
  readonly options?: Readonly<Record<string, OptionRule | true>>;
  /** Combined short flags allowed as one argument (e.g. `-tunlp`). */
  readonly flagPattern?: RegExp;
  /** Arguments that are not options. */
  readonly positional?: PositionalRule;
  /**
   * A whole grammar of its own, for commands whose arguments are words rather than options (`ip addr
   * show`); when set, `options`, `flagPattern` and `positional` are not used.
   */
  readonly grammar?: (args: readonly string[]) => string | undefined;
  /** Adds what the agent always wants (a line limit, `show`) to accepted arguments. */
  readonly complete?: (args: readonly string[]) => readonly string[];
}

export interface CommandSpec {
  /** Absolute path of the program. Without it, `binary` (default: the command's name) is looked up in the safe PATH. */
  readonly path?: string;
  readonly binary?: string;
  /** Replaces the agent's default timeout for this command. */
  readonly timeoutMs?: number;
  /** What it is for and how it is called, shown when a request is refused. */
  readonly description: string;
  /** Without rules the command takes no arguments. */
  readonly args?: ArgRules;
}

export type CommandAllowList = Readonly<Record<string, CommandSpec>>;

/** What the executor runs for an accepted request. */
export interface Invocation {
  readonly name: string;
  readonly spec: CommandSpec;
  readonly argv: readonly string[];
}

/** Why a request was refused (the executor turns it into PERMISSION_DENIED). */
export class Refusal {
  constructor(readonly reason: string) {}
}

const commandNamePattern = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$/;

/** Checks a request against the allow-list; answers the argv to run, or why it is refused. */
export function checkInvocation(
  allowList: ReadonlyMap<string, CommandSpec>,
  command: string,
  args: readonly string[],
  limits: { maxArgLength: number } = { maxArgLength: defaults.agentDiagnostics.exec.maxArgLength },
): Invocation | Refusal {
  if (command.includes("/") || command.includes("\\"))
    return new Refusal(`"${printable(command)}" is a path; commands are named, not given as paths`);
  if (!commandNamePattern.test(command) || command === "." || command === "..")
    return new Refusal(`"${printable(command)}" is not an allowed command`);
  const spec = allowList.get(command);
  if (spec === undefined) return new Refusal(`"${command}" is not an allowed command`);
  const rules = spec.args ?? { maxCount: 0 };
  if (args.length > rules.maxCount) {
    return new Refusal(
      rules.maxCount === 0
        ? `${command} takes no arguments`
        : `${command} takes at most ${rules.maxCount} arguments, got ${args.length}`,
    );
  }
  for (const arg of args) {
    if (/[\0\n\r]/.test(arg)) return new Refusal(`${command}: arguments may not contain NUL or line breaks`);
    if (arg.length > limits.maxArgLength)
      return new Refusal(`${command}: an argument is longer than ${limits.maxArgLength} characters`);
    if (arg === "") return new Refusal(`${command}: empty arguments are not allowed`);
  }
  const problem = rules.grammar ? rules.grammar(args) : checkGeneric(rules, args);
  if (problem !== undefined) return new Refusal(`${command}: ${problem}`);
  const completed = rules.complete ? rules.complete(args) : args;
  return {
    name: command,
    spec,
    argv: [...(rules.fixedPrefix ?? []), ...completed, ...(rules.fixedSuffix ?? [])],
  };
}

function checkGeneric(rules: ArgRules, args: readonly string[]): string | undefined {
  let positional = 0;
  for (let i = 0; i < args.length; i++) {
    const arg = args[i] as string;
    if (arg.startsWith("-")) {
      const eq = arg.startsWith("--") ? arg.indexOf("=") : -1;
      const name = eq > 0 ? arg.slice(0, eq) : arg;
      const rule = rules.options?.[name];
      if (rule === undefined || (rule === true && eq > 0)) {
        if (eq < 0 && rules.flagPattern?.test(arg)) continue;
        return `option "${printable(arg)}" is not allowed`;
      }
      if (rule === true) continue;
      let value: string | undefined;
      if (eq > 0) value = arg.slice(eq + 1);
      else {
        value = args[i + 1];
        i++;
      }
      if (value === undefined) return `option ${name} needs a value`;
      if (rule.value !== undefined && !rule.value.test(value))
        return `value "${printable(value)}" of ${name} is not allowed`;
      const problem = rule.check?.(value);
      if (problem !== undefined) return `${name}: ${problem}`;
      continue;
    }
    const rule = rules.positional;
    if (rule === undefined) return `argument "${printable(arg)}" is not allowed`;
    positional++;
    if (positional > rule.max) return `too many arguments that are not options (at most ${rule.max})`;
    if (!rule.pattern.test(arg)) return `argument "${printable(arg)}" is not allowed`;
    const problem = rule.check?.(arg);
    if (problem !== undefined) return problem;
  }
  const min = rules.positional?.min ?? 0;
  if (positional < min) return `needs at least ${min} argument${min === 1 ? "" : "s"} that are not options`;
  return undefined;
}

/** Shows untrusted text in a message: at most 64 characters, control characters as `\\xNN`. */
export function printable(text: string): string {
  const shown = text.length > 64 ? `${text.slice(0, 64)}…` : text;
  let out = "";
  for (const c of shown) {
    const code = c.charCodeAt(0);
    out += code < 0x20 || code === 0x7f ? `\\x${code.toString(16).padStart(2, "0")}` : c;
  }
  return out;
}

// ------------------------------------------------------------------------------------------ defaults

const intAtMost =
  (max: number, min = 1): ValueCheck =>
  (value) => {
    const n = Number(value);
    return Number.isInteger(n) && n >= min && n <= max ? undefined : `must be between ${min} and ${max}`;
  };

const noDotDot: ValueCheck = (value) =>
  value.split("/").includes("..") ? `"${value}" has a ".." segment` : undefined;

const hasOption = (args: readonly string[], names: readonly string[]): boolean =>
  args.some((a) => names.includes(a) || names.some((n) => n.startsWith("--") && a.startsWith(`${n}=`)));

const flags = (...names: string[]): Record<string, true> =>
  Object.fromEntries(names.map((name) => [name, true as const]));

const priority = "(?:emerg|alert|crit|err|warning|notice|info|debug|[0-7])";
const journalPriority = new RegExp(`^${priority}(?:\\.\\.${priority})?$`);
/** journalctl time specs: "2024-05-01 10:00", "@1714557600", "1 hour ago", "-1h", "today". */
const journalTime = /^[A-Za-z0-9][A-Za-z0-9 :.@+_-]{0,63}$|^-[0-9][A-Za-z0-9 ]{0,30}$/;
const unitName = /^[A-Za-z0-9@_][A-Za-z0-9@._:\\-]{0,127}$/;
const hostLabel = "[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?";
const hostName = new RegExp(`^(?=.{1,253}$)${hostLabel}(?:\\.${hostLabel})*\\.?$`);
const ipv6 = /^(?=.{2,64}$)[0-9A-Fa-f]*:[0-9A-Fa-f:.]*(?:%[A-Za-z0-9_.-]{1,15})?$/;
const interfaceName = /^[A-Za-z0-9_][A-Za-z0-9_.@-]{0,14}$/;

const ipObjects = new Set(["addr", "address", "a", "link", "l", "route", "r", "neigh", "neighbour", "n"]);
const ipOptions = new Set([
  "-4",
  "-6",
  "-br",
  "-brief",
  "-s",
  "-stats",
  "-d",
  "-details",
  "-j",
  "-json",
  "-p",
  "-pretty",
]);
const ipVerbs = new Set(["show", "list", "ls"]);

/** `ip [OPTIONS] OBJECT [show|list] [dev IFNAME]`: only ever shows. */
function ipGrammar(args: readonly string[]): string | undefined {
  let i = 0;
  while (i < args.length && ipOptions.has(args[i] as string)) i++;
  const object = args[i];
  if (object === undefined) return "give an object: addr, link, route or neigh (e.g. ip addr show)";
  if (!ipObjects.has(object)) return `"${printable(object)}" is not allowed; use addr, link, route or neigh`;
  i++;
  if (i < args.length && ipVerbs.has(args[i] as string)) i++;
  if (i < args.length) {
    if (args[i] !== "dev") return `"${printable(args[i] as string)}" is not allowed; only show [dev IFNAME]`;
    const name = args[i + 1];
    if (name === undefined || !interfaceName.test(name)) return "dev needs an interface name";
    i += 2;
  }
  return i === args.length ? undefined : `"${printable(args[i] as string)}" is not allowed`;
}

function ipComplete(args: readonly string[]): readonly string[] {
  let i = 0;
  while (i < args.length && ipOptions.has(args[i] as string)) i++;
  const verb = args[i + 1];
  if (verb !== undefined && ipVerbs.has(verb)) return args;
  return [...args.slice(0, i + 1), "show", ...args.slice(i + 1)];
}

const vcgencmdCommands: Readonly<Record<string, readonly string[] | undefined>> = {
  measure_temp: [],
  get_throttled: [],
  version: [],
  get_camera: [],
  commands: [],
  measure_clock: ["arm", "core", "h264", "isp", "v3d", "uart", "pwm", "emmc", "pixel", "vec", "hdmi", "dpi"],
  measure_volts: ["core", "sdram_c", "sdram_i", "sdram_p"],
  get_mem: ["arm", "gpu"],
};

/** `vcgencmd COMMAND [ARG]`, read-only firmware queries. */
function vcgencmdGrammar(args: readonly string[]): string | undefined {
  const [command, arg, ...rest] = args;
  const allowedCommands = Object.keys(vcgencmdCommands).join(", ");
  if (command === undefined) return `give a query: ${allowedCommands}`;
  if (command === "get_config") {
    return arg !== undefined && /^[a-z0-9_]{1,64}$/.test(arg) && rest.length === 0
      ? undefined
      : "get_config takes one name (int, str or a setting)";
  }
  const values = Object.hasOwn(vcgencmdCommands, command) ? vcgencmdCommands[command] : undefined;
  if (values === undefined)
    return `"${printable(command)}" is not allowed; use ${allowedCommands}, get_config`;
  if (rest.length > 0) return "too many arguments";
  if (arg === undefined)
    return command === "measure_clock" || command === "get_mem"
      ? `${command} needs one of ${values.join(", ")}`
      : undefined;
  return values.includes(arg) ? undefined : `${command} takes one of ${values.join(", ") || "nothing"}`;
}

const exec = defaults.agentDiagnostics.exec;
export const procFilesForCat = [
  "/proc/loadavg",
  "/proc/meminfo",
  "/proc/cpuinfo",
  "/proc/uptime",
  "/proc/version",
];

/** The commands every agent allows unless its configuration says otherwise. */
export const defaultCommands: CommandAllowList = {
  uptime: {
    description: "uptime [-p|-s]",
    args: { maxCount: 1, options: flags("-p", "--pretty", "-s", "--since") },
  },
  df: {
    description: "df [-h] [-H] [-T] [-i] [-k] [-l] [-P] [--total] [PATH...]",
    args: {
      maxCount: 12,
      options: flags(
        "-h",
        "--human-readable",
        "-H",
        "--si",
        "-T",
        "--print-type",
        "-i",
        "--inodes",
        "-k",
        "-l",
        "--local",
        "-P",
        "--portability",
        "--total",
      ),
      flagPattern: /^-[hHTiklP]{2,6}$/,
      positional: { pattern: /^\/[A-Za-z0-9._@+/-]{0,255}$/, check: noDotDot, max: 8 },
    },
  },
  free: {
    description: "free [-b|-k|-m|-g|-h] [--si] [-t] [-w]",
    args: {
      maxCount: 4,
      options: flags(
        "-b",
        "-k",
        "-m",
        "-g",
        "-h",
        "--bytes",
        "--kilo",
        "--mega",
        "--giga",
        "--human",
        "--si",
        "-t",
        "--total",
        "-w",
        "--wide",
      ),
      flagPattern: /^-[bkmghtw]{2,4}$/,
    },
  },
  ip: {
    description: "ip [-4|-6|-br|-s|-d|-j] addr|link|route|neigh [show] [dev IFNAME]",
    args: { maxCount: 8, grammar: ipGrammar, complete: ipComplete },
  },
  ss: {
    description: "ss [-t] [-u] [-n] [-l] [-p] [-a] [-s] [-4|-6] [-x] [-w] (e.g. ss -tunlp)",
    args: {
      maxCount: 6,
      options: flags(
        "--tcp",
        "--udp",
        "--numeric",
        "--listening",
        "--processes",
        "--all",
        "--summary",
        "--ipv4",
        "--ipv6",
        "--unix",
        "--raw",
        "--extended",
        "--info",
        "--memory",
        "--options",
        "--no-header",
      ),
      // Never K (kill sockets), D (dump to a file), F (read a filter file), N (other namespace), E (never ends).
      flagPattern: /^-[tunlpasxwr46Heoim]{1,12}$/,
    },
  },
  journalctl: {
    description: `journalctl [-n N≤${exec.journalctlMaxLines}] [-u UNIT] [--since TIME] [--until TIME] [-p PRIO] [-k] [-b] [-r] [-q] [-o FORMAT] [--utc] (never -f; --no-pager always)`,
    args: {
      maxCount: 16,
      options: {
        "-n": { value: /^\d{1,6}$/, check: intAtMost(exec.journalctlMaxLines) },
        "--lines": { value: /^\d{1,6}$/, check: intAtMost(exec.journalctlMaxLines) },
        "-u": { value: unitName },
        "--unit": { value: unitName },
        "--since": { value: journalTime },
        "-S": { value: journalTime },
        "--until": { value: journalTime },
        "-U": { value: journalTime },
        "-p": { value: journalPriority },
        "--priority": { value: journalPriority },
        "-o": {
          value:
            /^(short|short-iso|short-iso-precise|short-precise|short-monotonic|short-unix|cat|json|verbose)$/,
        },
        "--output": {
          value:
            /^(short|short-iso|short-iso-precise|short-precise|short-monotonic|short-unix|cat|json|verbose)$/,
        },
        ...flags(
          "-k",
          "--dmesg",
          "-b",
          "--boot",
          "-r",
          "--reverse",
          "-q",
          "--quiet",
          "--utc",
          "-x",
          "--catalog",
          "--no-hostname",
          "-a",
          "--all",
        ),
      },
      // Without -n journalctl prints the whole journal: the agent bounds it.
      complete: (args) =>
        hasOption(args, ["-n", "--lines"]) ? args : ["-n", String(exec.journalctlDefaultLines), ...args],
      fixedSuffix: ["--no-pager"],
    },
  },
  vcgencmd: {
    description:
      "vcgencmd measure_temp|get_throttled|version|get_camera|commands|measure_clock CLOCK|measure_volts [BLOCK]|get_mem arm|gpu|get_config NAME",
    args: { maxCount: 2, grammar: vcgencmdGrammar },
  },
  uname: {
    description: "uname [-a|-s|-n|-r|-v|-m|-p|-i|-o]",
    args: {
      maxCount: 4,
      options: flags(
        "-a",
        "--all",
        "-s",
        "-n",
        "-r",
        "-v",
        "-m",
        "-p",
        "-i",
        "-o",
        "--kernel-name",
        "--nodename",
        "--kernel-release",
        "--kernel-version",
        "--machine",
        "--processor",
        "--hardware-platform",
        "--operating-system",
      ),
      flagPattern: /^-[snrvmpio]{2,8}$/,
    },
  },
  hostname: {
    // Never a positional argument or -F: those set the host name.
    description: "hostname [-f|-s|-d|-i|-I|-A]",
    args: {
      maxCount: 1,
      options: flags(
        "-f",
        "--fqdn",
        "--long",
        "-s",
        "--short",
        "-d",
        "--domain",
        "-i",
        "--ip-address",
        "-I",
        "--all-ip-addresses",
        "-A",
        "--all-fqdns",
      ),
    },
  },
  cat: {
    description: `cat ${procFilesForCat.join("|")}`,
    args: {
      maxCount: 4,
      positional: {
        pattern: new RegExp(`^(${procFilesForCat.map((p) => p.replace(/\//g, "\\/")).join("|")})$`),
        min: 1,
        max: 4,
      },
    },
  },
  ping: {
    description: `ping [-c N≤${exec.pingMaxCount}] [-W S≤${exec.pingMaxWait}] [-4|-6] [-n] [-q] HOST`,
    timeoutMs: (exec.pingMaxCount * exec.pingMaxWait + 5) * 1_000,
    args: {
      maxCount: 8,
      options: {
        "-c": { value: /^\d{1,3}$/, check: intAtMost(exec.pingMaxCount) },
        "-W": { value: /^\d{1,3}$/, check: intAtMost(exec.pingMaxWait) },
        ...flags("-4", "-6", "-n", "-q"),
      },
      positional: {
        pattern: /^[A-Za-z0-9:][A-Za-z0-9.:%_-]*$/,
        check: (host) =>
          hostName.test(host) || ipv6.test(host)
            ? undefined
            : `"${printable(host)}" is not a host name or address`,
        min: 1,
        max: 1,
      },
      complete: (args) => [
        ...(args.includes("-c") ? [] : ["-c", "3"]),
        ...(args.includes("-W") ? [] : ["-W", "2"]),
        ...args,
      ],
    },
  },
};

/** Validates a configured allow-list (absolute paths, sane names) and makes it a lookup table. */
export function compileAllowList(commands: CommandAllowList): ReadonlyMap<string, CommandSpec> {
  const table = new Map<string, CommandSpec>();
  for (const [name, spec] of Object.entries(commands)) {
    if (!commandNamePattern.test(name)) throw new Error(`allow-list: "${name}" is not a command name`);
    if (spec.path !== undefined && (!isAbsolute(spec.path) || normalize(spec.path) !== spec.path))
      throw new Error(`allow-list: ${name}.path must be an absolute, normalized path, got "${spec.path}"`);
    if (spec.binary !== undefined && !commandNamePattern.test(spec.binary))
      throw new Error(`allow-list: ${name}.binary must be a program name without "/", got "${spec.binary}"`);
    if (spec.timeoutMs !== undefined && !(spec.timeoutMs > 0))
      throw new Error(`allow-list: ${name}.timeoutMs must be positive`);
    table.set(name, spec);
  }
  return table;
}
