/**
 * The command layer of the kernel GPIO driver: argv for the libgpiod command-line tools (gpioset,
 * gpioget, gpioinfo, gpiodetect) and parsers for what they print. Pure functions, no process is run here.
 *
 * Two generations of the tools exist: v1 (Debian 12, Raspberry Pi OS bookworm: `gpioset CHIP 18=1`,
 * `--mode=time|signal`) and v2 (Debian 13 on: `gpioset -c CHIP 18=1`, holds until killed, `-t` toggles).
 */
import { ErrorCode } from "../../../base/errors.ts";
import type { GpioLevel, PinSettings } from "./gpio-backend.ts";

export type GpiodMajor = 1 | 2;

/** The major version from `gpioset --version` ("gpioset (libgpiod) v1.6.3"), or undefined. */
export function parseToolsVersion(text: string): GpiodMajor | undefined {
  const match = /\(libgpiod\)\s+v?(\d+)\.\d+/.exec(text);
  if (match === null) return undefined;
  const major = Number(match[1]);
  return major === 1 || major === 2 ? major : undefined;
}

export interface DetectedChip {
  name: string;
  label: string;
  lines: number;
}

/** `gpiodetect` output, one chip a line: "gpiochip0 [pinctrl-bcm2711] (58 lines)". Other lines are skipped. */
export function parseGpiodetect(text: string): DetectedChip[] {
  const chips: DetectedChip[] = [];
  for (const line of text.split(/\r?\n/)) {
    const match = /^\s*(\S+)\s+\[(.*)\]\s+\((\d+)\s+lines?\)\s*$/.exec(line);
    if (match === null) continue;
    chips.push({ name: match[1] ?? "", label: match[2] ?? "", lines: Number(match[3]) });
  }
  return chips;
}

export interface LineInfo {
  offset: number;
  /** The line's name, when the board names it ("GPIO18", "ID_SDA"). */
  name?: string;
  /** Who holds the line ("gpioset", a kernel driver's name), when it is in use. */
  consumer?: string;
  direction: "input" | "output";
  activeLow: boolean;
  used: boolean;
}

export interface ChipInfo {
  chip: string;
  lines: number;
  lineInfo: LineInfo[];
}

/**
 * `gpioinfo` output, both generations:
 *   v1: `gpiochip0 - 54 lines:` then `\tline  18:      "GPIO18"   "gpioset"  output  active-high [used]`
 *       (name: quoted or `unnamed`; consumer: quoted or `unused`)
 *   v2: `gpiochip0 - 54 lines:` then `\tline  18:\t"GPIO18"\toutput active-low consumer="gpioset"`
 */
export function parseGpioinfo(text: string): ChipInfo[] {
  const chips: ChipInfo[] = [];
  let current: ChipInfo | undefined;
  for (const raw of text.split(/\r?\n/)) {
    const header = /^(\S+)\s+-\s+(\d+)\s+lines?:\s*$/.exec(raw);
    if (header !== null) {
      current = { chip: header[1] ?? "", lines: Number(header[2]), lineInfo: [] };
      chips.push(current);
      continue;
    }
    const line = /^\s+line\s+(\d+):\s*(.*)$/.exec(raw);
    if (line === null || current === undefined) continue;
    const info = parseLineFields(Number(line[1]), line[2] ?? "");
    if (info !== undefined) current.lineInfo.push(info);
  }
  return chips;
}

/** Splits into words, keeping "quoted words" (and key="quoted values") whole. */
function words(text: string): string[] {
  return text.match(/(?:[^\s"]+)?"[^"]*"|[^\s"]+/g) ?? [];
}

function unquote(word: string): string {
  return word.startsWith('"') && word.endsWith('"') && word.length >= 2 ? word.slice(1, -1) : word;
}

function parseLineFields(offset: number, rest: string): LineInfo | undefined {
  const parts = words(rest);
  const first = parts[0];
  if (first === undefined) return undefined;
  const info: LineInfo = { offset, direction: "input", activeLow: false, used: false };
  if (first !== "unnamed") info.name = unquote(first);
  const v2 = !(parts[1]?.startsWith('"') === true || parts[1] === "unused");
  if (!v2) {
    // v1: name, consumer, direction, active state, [flags]
    const consumer = parts[1] ?? "unused";
    if (consumer !== "unused") info.consumer = unquote(consumer);
    info.direction = parts[2] === "output" ? "output" : "input";
    info.activeLow = parts[3] === "active-low";
    info.used = /\[[^\]]*\bused\b[^\]]*\]/.test(rest);
    return info;
  }
  // v2: name, direction, then attributes (active-low, drive=, bias=, consumer="...")
  info.direction = parts[1] === "output" ? "output" : "input";
  for (const part of parts.slice(2)) {
    if (part === "active-low") info.activeLow = true;
    else if (part.startsWith("consumer=")) {
      info.consumer = unquote(part.slice("consumer=".length));
      info.used = true;
    } else if (part === "used" || part === "[used]") info.used = true;
  }
  return info;
}

/**
 * The level from `gpioget` output for one line: v1 and v2 `--numeric` print "1"; v2 without it prints
 * `"18"=active`. Undefined when the text is none of these.
 */
export function parseGpioget(text: string): GpioLevel | undefined {
  const trimmed = text.trim();
  if (trimmed === "0" || trimmed === "1") return trimmed === "1" ? 1 : 0;
  const named = /=(active|inactive)$/.exec(trimmed);
  if (named !== null) return named[1] === "active" ? 1 : 0;
  return undefined;
}

/**
 * The options that carry a line's configuration to a tool: active-low and bias (both generations), and
 * for gpiomon the edges and (v2) the debounce period. v1 has no debounce: the driver debounces its events.
 */
export function lineFlags(
  major: GpiodMajor,
  settings: PinSettings | undefined,
  tool: "set" | "get" | "mon",
): string[] {
  const flags: string[] = [];
  // A line never configured here is requested as it is (the tools' default bias is "as-is").
  if (settings === undefined) return tool === "mon" && major === 2 ? ["--edges=both"] : flags;
  if (settings.activeLow) flags.push(major === 1 ? "--active-low" : "-l");
  const bias = { none: "disable", up: "pull-up", down: "pull-down" }[settings.pull];
  if (tool !== "set" || settings.direction === "input") flags.push(`--bias=${bias}`);
  if (tool === "mon") {
    if (major === 1) {
      if (settings.edge === "rising") flags.push("--rising-edge");
      if (settings.edge === "falling") flags.push("--falling-edge");
    } else {
      flags.push(`--edges=${settings.edge === "none" ? "both" : settings.edge}`);
      if (settings.debounceMs > 0) flags.push(`--debounce-period=${settings.debounceMs}ms`);
    }
  }
  return flags;
}

/** argv (without the program) for each operation, by tool generation; `flags` from `lineFlags`. */
export const gpiodArgv = {
  /** Drive and keep driving until SIGTERM: the kernel reverts a line when its holder exits. */
  hold(major: GpiodMajor, chip: string, pin: number, level: GpioLevel, flags: string[] = []): string[] {
    return major === 1
      ? ["--mode=signal", ...flags, chip, `${pin}=${level}`]
      : ["-c", chip, ...flags, `${pin}=${level}`];
  },
  /** Drive `level` for `ms`, then exit (v1: --mode=time; v2: toggle once after ms, then exit). */
  pulse(major: GpiodMajor, chip: string, pin: number, level: GpioLevel, ms: number): string[] {
    if (major === 1) {
      const sec = Math.floor(ms / 1000);
      const usec = (ms % 1000) * 1000;
      return ["--mode=time", `--sec=${sec}`, `--usec=${usec}`, chip, `${pin}=${level}`];
    }
    return ["-c", chip, "-t", `${ms}ms,0`, `${pin}=${level}`];
  },
  get(major: GpiodMajor, chip: string, pin: number, flags: string[] = []): string[] {
    return major === 1 ? [...flags, chip, String(pin)] : ["--numeric", "-c", chip, ...flags, String(pin)];
  },
  /** Edge events of one line, one line of output each: "<offset> <type> <seconds>.<ns>". */
  monitor(major: GpiodMajor, chip: string, pin: number, flags: string[] = []): string[] {
    return major === 1
      ? ["--line-buffered", "--format=%o %e %s.%n", ...flags, chip, String(pin)]
      : ["-c", chip, "--format=%o %e %S", ...flags, String(pin)];
  },
  info(major: GpiodMajor, chip: string): string[] {
    return major === 1 ? [chip] : ["-c", chip];
  },
  detect(): string[] {
    return [];
  },
  version(): string[] {
    return ["--version"];
  },
} as const;

export interface MonitorEvent {
  pin: number;
  rising: boolean;
  /** ms since the epoch (v1 prints real time; v2 by default monotonic: then the caller's clock is used). */
  at: number | undefined;
}

/**
 * One line of gpiomon output in `gpiodArgv.monitor`'s format. Event types: v1 1 rising, 0 falling;
 * v2 1 rising, 2 falling. Undefined for anything else.
 */
export function parseGpiomonLine(major: GpiodMajor, line: string): MonitorEvent | undefined {
  const match = /^\s*(\d+)\s+(\d)\s+(\d+)(?:\.(\d+))?\s*$/.exec(line);
  if (match === null) return undefined;
  const type = Number(match[2]);
  const rising = type === 1;
  if (!rising && type !== (major === 1 ? 0 : 2)) return undefined;
  const seconds = Number(match[3]);
  // Monotonic stamps (seconds since boot) are far below any real time: leave those to the caller.
  const at =
    major === 1 && seconds > 1e9
      ? seconds * 1000 + Math.floor(Number(`0.${match[4] ?? "0"}`) * 1000)
      : undefined;
  return { pin: Number(match[1]), rising, at };
}

export type ToolFailure = "busy" | "no-device" | "invalid" | "permission" | "other";

/**
 * What a tool's failure means, from its message (strerror text after the tool's own words):
 * "gpioset: error setting the GPIO line values: Device or resource busy" → busy.
 */
export function classifyToolFailure(stderr: string): ToolFailure {
  if (/Device or resource busy|\bEBUSY\b/i.test(stderr)) return "busy";
  if (/Permission denied|Operation not permitted|\bEACCES\b|\bEPERM\b/i.test(stderr)) return "permission";
  if (/No such file or directory|No such device|cannot find GPIO chip|\bENOENT\b|\bENODEV\b/i.test(stderr))
    return "no-device";
  if (/Invalid argument|out of range|invalid offset|\bEINVAL\b/i.test(stderr)) return "invalid";
  return "other";
}

/** The CorralError code for each kind of tool failure. */
export const toolFailureCode: Readonly<Record<ToolFailure, ErrorCode>> = {
  busy: ErrorCode.FailedPrecondition,
  permission: ErrorCode.FailedPrecondition,
  "no-device": ErrorCode.Unavailable,
  invalid: ErrorCode.InvalidArgument,
  other: ErrorCode.Unavailable,
};

/** The last non-empty line of a tool's stderr, for an error message. */
export function lastLine(text: string): string {
  const lines = text
    .split(/\r?\n/)
    .map((line) => line.trim())
    .filter((line) => line !== "");
  return lines.at(-1) ?? "";
}
