import { type ChildProcess, execFile, spawn } from "node:child_process";
import path from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { parseDuration } from "../../../base/duration.ts";
import { CorralError, ErrorCode } from "../../../base/errors.ts";
import { defaults } from "../../../defaults.ts";
import {
  cancelled,
  checkLevel,
  checkPin,
  checkPulseMs,
  checkSettings,
  defaultPinSettings,
  type GpioBackend,
  type GpioLevel,
  LineLocks,
  lineBusy,
  opposite,
  type PinSettings,
  type PinStatus,
  type PinWatch,
  type PinWatchOptions,
  resolveChip,
} from "./gpio-backend.ts";
import {
  classifyToolFailure,
  type DetectedChip,
  type GpiodMajor,
  gpiodArgv,
  lastLine,
  lineFlags,
  parseGpiodetect,
  parseGpioget,
  parseGpioinfo,
  parseGpiomonLine,
  parseToolsVersion,
  toolFailureCode,
} from "./gpiod-tools.ts";

export interface GpiochipGpioOptions {
  /** Folder holding gpioset, gpioget, gpioinfo and gpiodetect; default: found on PATH. */
  toolDir?: string;
  /** Each tool run is killed after this (a pulse gets its own length on top); default 5 s. */
  timeoutMs?: number;
  /** How long a started gpioset may take to show as holding its line; default 2 s. */
  holdConfirmTimeoutMs?: number;
  /** Environment of the tools; default: the agent's. */
  env?: NodeJS.ProcessEnv;
}

type ToolName = "gpioset" | "gpioget" | "gpioinfo" | "gpiodetect" | "gpiomon";

interface ToolResult {
  stdout: string;
  stderr: string;
}

interface Holder {
  readonly child: ChildProcess;
  readonly level: GpioLevel;
  readonly exited: Promise<void>;
  stderr: string;
}

const stderrCap = 4096;
/** Input lines watched at once: each is a gpiomon process. */
const maxMonitors = 32;

/**
 * GPIO through the kernel's character device (/dev/gpiochipN), driven by the libgpiod command-line tools
 * run as argv (no shell) with a timeout.
 *
 * The kernel keeps a line driven only while a process holds it, so a written line is held by a
 * `gpioset` in signal mode (v1) / default mode (v2) that this backend keeps running until the next write
 * or pulse of that line, or `close()`. A write is confirmed only once `gpioinfo` shows the line as an
 * output in use; a read of a line this backend holds answers the level it drives (the kernel refuses a
 * second request of a held line). Changing a held line restarts its gpioset, so the line is released for
 * the moment between the two processes.
 */
export class GpiochipGpio implements GpioBackend {
  readonly kind = "gpiochip" as const;
  readonly chips: readonly string[];
  readonly major: GpiodMajor;
  readonly #detected: ReadonlyMap<string, DetectedChip>;
  readonly #toolDir: string | undefined;
  readonly #timeoutMs: number;
  readonly #confirmMs: number;
  readonly #env: NodeJS.ProcessEnv | undefined;
  readonly #holders = new Map<string, Holder>();
  readonly #locks = new LineLocks();
  readonly #settings = new Map<string, PinSettings>();
  readonly #watchers = new Set<Watcher>();
  /** One gpiomon per watched input line, shared by every watcher of the line. */
  readonly #monitors = new Map<string, Monitor>();
  readonly #onExit = () => {
    for (const holder of this.#holders.values()) holder.child.kill("SIGTERM");
    for (const monitor of this.#monitors.values()) monitor.child?.kill("SIGTERM");
  };
  #closed = false;

  private constructor(
    detected: readonly DetectedChip[],
    major: GpiodMajor,
    options: GpiochipGpioOptions,
    timeoutMs: number,
  ) {
    this.chips = detected.map((chip) => chip.name);
    this.#detected = new Map(detected.map((chip) => [chip.name, chip]));
    this.major = major;
    this.#toolDir = options.toolDir;
    this.#timeoutMs = timeoutMs;
    this.#confirmMs =
      options.holdConfirmTimeoutMs ?? parseDuration(defaults.agentHardware.gpioHoldConfirmTimeout);
    this.#env = options.env;
    // Holders must not outlive the agent: a stray gpioset would keep its line busy for the next start.
    process.on("exit", this.#onExit);
  }

  /** Finds the chips (`gpiodetect`) and the tools' generation (`gpioset --version`); fails when either fails. */
  static async open(options: GpiochipGpioOptions = {}): Promise<GpiochipGpio> {
    const timeoutMs = options.timeoutMs ?? parseDuration(defaults.agentHardware.gpioToolTimeout);
    const run = (tool: ToolName, args: string[]) =>
      runTool(toolPath(options.toolDir, tool), args, { timeoutMs, env: options.env });
    const version = await run("gpioset", gpiodArgv.version());
    const major = parseToolsVersion(`${version.stdout}\n${version.stderr}`);
    if (major === undefined) {
      throw new CorralError(
        ErrorCode.FailedPrecondition,
        `gpioset --version printed no libgpiod version: ${lastLine(version.stdout) || "(nothing)"}`,
      );
    }
    const detected = parseGpiodetect((await run("gpiodetect", gpiodArgv.detect())).stdout);
    if (detected.length === 0) {
      throw new CorralError(ErrorCode.FailedPrecondition, "gpiodetect found no GPIO chip");
    }
    return new GpiochipGpio(detected, major, options, timeoutMs);
  }

  lines(chip?: string): number {
    return this.#detected.get(resolveChip(this.chips, chip))?.lines ?? 0;
  }

  async write(pin: number, level: GpioLevel, chip?: string): Promise<GpioLevel> {
    const { name, offset } = this.#line(pin, chip);
    checkLevel(level);
    return this.#locks.run(`${name}:${offset}`, async () => {
      this.#checkOpen();
      const before = this.#liveHolder(name, offset)?.level;
      await this.#stopMonitor(name, offset);
      await this.#release(name, offset);
      const key = `${name}:${offset}`;
      const configured = this.#settings.get(key);
      if (configured !== undefined) this.#settings.set(key, { ...configured, direction: "output" });
      const after = await this.#hold(name, offset, level);
      if (after !== before) this.#notify(name, offset, after);
      return after;
    });
  }

  async read(pin: number, chip?: string): Promise<GpioLevel> {
    const { name, offset } = this.#line(pin, chip);
    return this.#locks.run(`${name}:${offset}`, async () => {
      this.#checkOpen();
      const holder = this.#liveHolder(name, offset);
      if (holder !== undefined) return holder.level;
      const monitor = await this.#liveMonitor(name, offset);
      if (monitor !== undefined) return monitor.level;
      const flags = this.#flags(name, offset, "get");
      const result = await this.#tool(
        "gpioget",
        gpiodArgv.get(this.major, name, offset, flags),
        name,
        offset,
      );
      const level = parseGpioget(result.stdout);
      if (level === undefined) {
        throw new CorralError(
          ErrorCode.Unavailable,
          `gpioget printed no level for ${name} line ${offset}: ${lastLine(result.stdout) || "(nothing)"}`,
        );
      }
      return level;
    });
  }

  async pulse(
    pin: number,
    level: GpioLevel,
    ms: number,
    chip?: string,
    signal?: AbortSignal,
  ): Promise<GpioLevel> {
    const { name, offset } = this.#line(pin, chip);
    checkLevel(level);
    checkPulseMs(ms);
    return this.#locks.run(`${name}:${offset}`, async () => {
      this.#checkOpen();
      const isAborted = () => signal?.aborted === true;
      if (isAborted()) throw cancelled("the pulse");
      await this.#stopMonitor(name, offset);
      await this.#release(name, offset);
      let aborted = false;
      try {
        await this.#tool("gpioset", gpiodArgv.pulse(this.major, name, offset, level, ms), name, offset, {
          timeoutMs: ms + this.#timeoutMs,
          ...(signal === undefined ? {} : { signal }),
        });
      } catch (error) {
        if (!isAborted()) throw error;
        aborted = true; // cut short: still leave the line at the opposite level
      }
      const final = await this.#hold(name, offset, opposite(level));
      this.#notify(name, offset, level);
      this.#notify(name, offset, final);
      if (aborted) throw cancelled("the pulse");
      return final;
    });
  }

  async configure(
    pin: number,
    settings: PinSettings,
    chip?: string,
    initialLevel?: GpioLevel,
  ): Promise<PinStatus> {
    const { name, offset } = this.#line(pin, chip);
    const checked = checkSettings(settings);
    if (initialLevel !== undefined) checkLevel(initialLevel);
    const key = `${name}:${offset}`;
    await this.#locks.run(key, async () => {
      this.#checkOpen();
      const before = this.#liveHolder(name, offset)?.level;
      await this.#stopMonitor(name, offset);
      await this.#release(name, offset);
      this.#settings.set(key, checked);
      if (checked.direction === "output") {
        const level = await this.#hold(name, offset, initialLevel ?? before ?? 0);
        if (level !== before) this.#notify(name, offset, level);
      } else if ([...this.#watchers].some((watcher) => watcher.chip === name && watcher.pins.has(offset))) {
        this.#startMonitor(name, offset);
      }
    });
    return this.status(offset, name);
  }

  async status(pin: number, chip?: string): Promise<PinStatus> {
    const { name, offset } = this.#line(pin, chip);
    const monitor = await this.#liveMonitor(name, offset);
    const info = await this.#lineInfo(name, offset);
    const held = this.#liveHolder(name, offset);
    const ours = held !== undefined || monitor !== undefined;
    const consumer = !ours && info?.used === true ? info.consumer : undefined;
    const level =
      held?.level ?? monitor?.level ?? (consumer === undefined ? await this.read(offset, name) : 0);
    return {
      chip: name,
      pin: offset,
      ...(info?.name === undefined ? {} : { name: info.name }),
      settings: this.#settingsOf(name, offset),
      level,
      ...(consumer === undefined ? {} : { consumer: consumer || "unknown" }),
    };
  }

  /** Every line: gpioinfo once; the levels of lines we hold are known, the free ones read with one gpioget each. */
  async list(chip?: string): Promise<PinStatus[]> {
    const name = resolveChip(this.chips, chip);
    const info = parseGpioinfo(
      (await this.#runRaw("gpioinfo", gpiodArgv.info(this.major, name))).stdout,
    ).find((entry) => entry.chip === name);
    const result: PinStatus[] = [];
    for (let offset = 0; offset < this.lines(name); offset++) {
      const line = info?.lineInfo.find((entry) => entry.offset === offset);
      const held = this.#liveHolder(name, offset);
      const monitor = await this.#liveMonitor(name, offset);
      const foreign = held === undefined && monitor === undefined && line?.used === true;
      let level: GpioLevel = held?.level ?? monitor?.level ?? 0;
      if (held === undefined && monitor === undefined && !foreign) {
        level = await this.read(offset, name).catch(() => 0 as GpioLevel);
      }
      result.push({
        chip: name,
        pin: offset,
        ...(line?.name === undefined ? {} : { name: line.name }),
        settings: this.#settingsOf(name, offset),
        level,
        ...(foreign ? { consumer: line?.consumer ?? "unknown" } : {}),
      });
    }
    return result;
  }

  /**
   * Writes of this backend are reported as they happen; inputs are watched by a gpiomon per line (with the
   * line's bias, active-low, edges and, for v2, debounce). The kernel lets one process request a line, so
   * a write or configuration of a watched line stops its gpiomon first, and configuring it back to an
   * input starts one again. v1 cannot debounce, so its events closer together than the period are dropped.
   */
  watch(options: PinWatchOptions): PinWatch {
    const watcher: Watcher = {
      chip: options.chip,
      pins: new Set(options.pins),
      onChange: options.onChange,
      onError: options.onError,
    };
    this.#watchers.add(watcher);
    for (const pin of watcher.pins) this.#startMonitor(options.chip, pin);
    return {
      close: () => {
        if (!this.#watchers.delete(watcher)) return;
        for (const pin of watcher.pins) {
          if (![...this.#watchers].some((other) => other.chip === watcher.chip && other.pins.has(pin))) {
            void this.#stopMonitor(watcher.chip, pin);
          }
        }
      },
    };
  }

  #startMonitor(chip: string, pin: number): void {
    const key = `${chip}:${pin}`;
    if (this.#closed || this.#monitors.has(key) || this.#liveHolder(chip, pin) !== undefined) return;
    const settings = this.#settingsOf(chip, pin);
    if (settings.direction === "output") return;
    if (this.#monitors.size >= maxMonitors) {
      const error = new CorralError(
        ErrorCode.ResourceExhausted,
        `${chip} line ${pin}: already watching ${maxMonitors} input lines (one gpiomon each); watch fewer lines`,
      );
      for (const watcher of this.#watchers) {
        if (watcher.chip === chip && watcher.pins.has(pin)) watcher.onError(error);
      }
      return;
    }
    const monitor: Monitor = {
      child: undefined,
      exited: Promise.resolve(),
      stopping: false,
      level: 0,
      ready: Promise.resolve(),
    };
    this.#monitors.set(key, monitor);
    // The level before the first edge: once gpiomon holds the line, gpioget cannot read it.
    monitor.ready = (async () => {
      try {
        const result = await this.#tool(
          "gpioget",
          gpiodArgv.get(this.major, chip, pin, this.#flags(chip, pin, "get")),
          chip,
          pin,
        );
        monitor.level = parseGpioget(result.stdout) ?? 0;
      } catch {
        // A busy or broken line: gpiomon fails the same way and says so.
      }
      if (!monitor.stopping && !this.#closed) this.#spawnMonitor(chip, pin, monitor, settings);
    })();
  }

  #spawnMonitor(chip: string, pin: number, monitor: Monitor, settings: PinSettings): void {
    const key = `${chip}:${pin}`;
    const child = spawn(
      this.#program("gpiomon"),
      gpiodArgv.monitor(this.major, chip, pin, this.#flags(chip, pin, "mon")),
      {
        stdio: ["ignore", "pipe", "pipe"],
        ...(this.#env === undefined ? {} : { env: this.#env }),
      },
    );
    monitor.child = child;
    monitor.exited = new Promise<void>((resolve) => {
      child.once("exit", () => resolve());
      child.once("error", () => resolve());
    });
    let buffered = "";
    let stderr = "";
    let lastAt = Number.NEGATIVE_INFINITY;
    child.stdout?.setEncoding("utf8");
    child.stdout?.on("data", (chunk: string) => {
      buffered += chunk;
      const lines = buffered.split("\n");
      buffered = (lines.pop() ?? "").slice(-stderrCap);
      for (const text of lines) {
        const event = parseGpiomonLine(this.major, text);
        if (event === undefined || event.pin !== pin) continue;
        const at = event.at ?? Date.now();
        if (this.major === 1 && settings.debounceMs > 0 && at - lastAt < settings.debounceMs) continue;
        lastAt = at;
        monitor.level = event.rising ? 1 : 0;
        this.#notify(chip, pin, monitor.level, at);
      }
    });
    child.stderr?.setEncoding("utf8");
    child.stderr?.on("data", (chunk: string) => {
      if (stderr.length < stderrCap) stderr += chunk.slice(0, stderrCap - stderr.length);
    });
    let reported = false;
    const failed = (why: string) => {
      if (reported) return;
      reported = true;
      if (this.#monitors.get(key) === monitor) this.#monitors.delete(key);
      if (monitor.stopping || this.#closed) return;
      const error = new CorralError(
        classifyToolFailure(why) === "busy" ? ErrorCode.FailedPrecondition : ErrorCode.Unavailable,
        `gpiomon on ${chip} line ${pin} stopped: ${lastLine(why) || "exited"}`,
      );
      for (const watcher of this.#watchers) {
        if (watcher.chip === chip && watcher.pins.has(pin)) watcher.onError(error);
      }
    };
    child.once("error", (error) => failed(error.message));
    child.once("exit", () => failed(stderr));
  }

  /** A running gpiomon of this backend on the line (its level is the last edge's). */
  async #liveMonitor(chip: string, pin: number): Promise<Monitor | undefined> {
    const monitor = this.#monitors.get(`${chip}:${pin}`);
    if (monitor === undefined) return undefined;
    await monitor.ready;
    return monitor.child !== undefined && isRunning(monitor.child) ? monitor : undefined;
  }

  /** Stops the line's gpiomon and waits until it has let the line go. */
  async #stopMonitor(chip: string, pin: number): Promise<void> {
    const key = `${chip}:${pin}`;
    const monitor = this.#monitors.get(key);
    if (monitor === undefined) return;
    monitor.stopping = true;
    this.#monitors.delete(key);
    await monitor.ready;
    const child = monitor.child;
    if (child === undefined) return;
    if (isRunning(child)) child.kill("SIGTERM");
    const stopped = await Promise.race([monitor.exited.then(() => true), sleep(2_000).then(() => false)]);
    if (!stopped) {
      child.kill("SIGKILL");
      await monitor.exited;
    }
  }

  async probe(): Promise<string> {
    this.#checkOpen();
    for (const [key, holder] of this.#holders) {
      if (!isRunning(holder.child)) {
        const why = lastLine(holder.stderr);
        throw new Error(`the gpioset holding ${key.replace(":", " line ")} exited${why ? `: ${why}` : ""}`);
      }
    }
    const detected = parseGpiodetect((await this.#runRaw("gpiodetect", gpiodArgv.detect())).stdout);
    const missing = this.chips.filter((chip) => !detected.some((found) => found.name === chip));
    if (missing.length > 0) throw new Error(`GPIO chip gone: ${missing.join(", ")}`);
    const list = detected.map((chip) => `${chip.name} [${chip.label}] ${chip.lines} lines`).join(", ");
    return `kernel GPIO character device (libgpiod tools v${this.major}): ${list}`;
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    process.off("exit", this.#onExit);
    this.#watchers.clear();
    await Promise.all(
      [...this.#monitors.keys()].map((key) => {
        const [chip = "", pin = "0"] = key.split(":");
        return this.#stopMonitor(chip, Number(pin));
      }),
    );
    await Promise.all([...this.#holders.values()].map((holder) => stopHolder(holder)));
    this.#holders.clear();
  }

  /** The consumer the kernel names for a line, from gpioinfo; undefined when it cannot be read. */
  async consumerOf(chip: string, pin: number): Promise<string | undefined> {
    try {
      const info = parseGpioinfo((await this.#runRaw("gpioinfo", gpiodArgv.info(this.major, chip))).stdout);
      return info.find((entry) => entry.chip === chip)?.lineInfo.find((line) => line.offset === pin)
        ?.consumer;
    } catch {
      return undefined;
    }
  }

  #line(pin: number, chip: string | undefined): { name: string; offset: number } {
    const name = resolveChip(this.chips, chip);
    return { name, offset: checkPin(pin, this.lines(name), name) };
  }

  #settingsOf(chip: string, pin: number): PinSettings {
    const settings = { ...(this.#settings.get(`${chip}:${pin}`) ?? defaultPinSettings) };
    // A line this backend drives is an output, configured or not.
    if (this.#liveHolder(chip, pin) !== undefined) settings.direction = "output";
    return settings;
  }

  /** The settings a tool is given: none for a line never configured here (requested as it is). */
  #flags(chip: string, pin: number, tool: "set" | "get" | "mon"): string[] {
    return lineFlags(this.major, this.#settings.get(`${chip}:${pin}`), tool);
  }

  #notify(chip: string, pin: number, level: GpioLevel, at = Date.now()): void {
    const change = { chip, pin, level, at };
    for (const watcher of this.#watchers) {
      if (watcher.chip === chip && watcher.pins.has(pin)) watcher.onChange(change);
    }
  }

  #checkOpen(): void {
    if (this.#closed) throw new CorralError(ErrorCode.Unavailable, "the GPIO backend is closed");
  }

  #liveHolder(chip: string, pin: number): Holder | undefined {
    const key = `${chip}:${pin}`;
    const holder = this.#holders.get(key);
    if (holder === undefined) return undefined;
    if (isRunning(holder.child)) return holder;
    this.#holders.delete(key);
    return undefined;
  }

  async #release(chip: string, pin: number): Promise<void> {
    const key = `${chip}:${pin}`;
    const holder = this.#holders.get(key);
    if (holder === undefined) return;
    this.#holders.delete(key);
    await stopHolder(holder);
  }

  /** Starts a gpioset that keeps `level` on the line, and waits until gpioinfo shows it holding the line. */
  async #hold(chip: string, pin: number, level: GpioLevel): Promise<GpioLevel> {
    const flags = this.#flags(chip, pin, "set");
    const child = spawn(this.#program("gpioset"), gpiodArgv.hold(this.major, chip, pin, level, flags), {
      stdio: ["ignore", "ignore", "pipe"],
      ...(this.#env === undefined ? {} : { env: this.#env }),
    });
    let spawnError: Error | undefined;
    const holder: Holder = {
      child,
      level,
      stderr: "",
      exited: new Promise<void>((resolve) => {
        child.once("exit", () => resolve());
        child.once("error", (error) => {
          spawnError = error;
          resolve();
        });
      }),
    };
    child.stderr?.setEncoding("utf8");
    child.stderr?.on("data", (chunk: string) => {
      if (holder.stderr.length < stderrCap) holder.stderr += chunk.slice(0, stderrCap - holder.stderr.length);
    });
    const deadline = Date.now() + this.#confirmMs;
    for (;;) {
      const exited = await Promise.race([holder.exited.then(() => true), sleep(20).then(() => false)]);
      if (exited) {
        if (spawnError !== undefined) throw this.#spawnFailure("gpioset", spawnError);
        throw await this.#failure("gpioset", holder.stderr, chip, pin);
      }
      const line = await this.#lineInfo(chip, pin);
      if (line?.used === true && line.direction === "output") break;
      if (Date.now() >= deadline) {
        await stopHolder(holder);
        throw new CorralError(
          ErrorCode.Unavailable,
          `gpioset did not take ${chip} line ${pin} within ${this.#confirmMs} ms`,
        );
      }
    }
    this.#holders.set(`${chip}:${pin}`, holder);
    return level;
  }

  async #lineInfo(chip: string, pin: number) {
    const info = parseGpioinfo((await this.#runRaw("gpioinfo", gpiodArgv.info(this.major, chip))).stdout);
    return info.find((entry) => entry.chip === chip)?.lineInfo.find((line) => line.offset === pin);
  }

  /** Runs a tool about one line; a failure becomes the CorralError its message calls for. */
  async #tool(
    tool: ToolName,
    args: string[],
    chip: string,
    pin: number,
    options: { timeoutMs?: number; signal?: AbortSignal } = {},
  ): Promise<ToolResult> {
    try {
      return await runTool(this.#program(tool), args, {
        timeoutMs: options.timeoutMs ?? this.#timeoutMs,
        env: this.#env,
        ...(options.signal === undefined ? {} : { signal: options.signal }),
      });
    } catch (error) {
      if (error instanceof ToolExit) throw await this.#failure(tool, error.stderr, chip, pin);
      throw error;
    }
  }

  async #runRaw(tool: ToolName, args: string[]): Promise<ToolResult> {
    try {
      return await runTool(this.#program(tool), args, { timeoutMs: this.#timeoutMs, env: this.#env });
    } catch (error) {
      if (error instanceof ToolExit) {
        throw new CorralError(
          ErrorCode.Unavailable,
          `${tool} failed: ${lastLine(error.stderr) || error.message}`,
        );
      }
      throw error;
    }
  }

  async #failure(tool: ToolName, stderr: string, chip: string, pin: number): Promise<CorralError> {
    const kind = classifyToolFailure(stderr);
    if (kind === "busy") return lineBusy(chip, pin, await this.consumerOf(chip, pin));
    const why = lastLine(stderr) || `${tool} failed`;
    const hint =
      kind === "permission" ? " (the agent needs read/write access to /dev/gpiochip*: the gpio group)" : "";
    return new CorralError(toolFailureCode[kind], `${chip} line ${pin}: ${why}${hint}`, {
      details: { chip, pin: String(pin) },
    });
  }

  #spawnFailure(tool: ToolName, error: Error): CorralError {
    return spawnFailure(this.#program(tool), error);
  }

  #program(tool: ToolName): string {
    return toolPath(this.#toolDir, tool);
  }
}

function toolPath(toolDir: string | undefined, tool: ToolName): string {
  return toolDir === undefined ? tool : path.join(toolDir, tool);
}

function isRunning(child: ChildProcess): boolean {
  return child.exitCode === null && child.signalCode === null && child.pid !== undefined;
}

/** SIGTERM (gpioset releases its lines and exits), then SIGKILL if it lingers. */
async function stopHolder(holder: Holder): Promise<void> {
  if (!isRunning(holder.child)) {
    await holder.exited;
    return;
  }
  holder.child.kill("SIGTERM");
  const stopped = await Promise.race([holder.exited.then(() => true), sleep(2_000).then(() => false)]);
  if (!stopped) {
    holder.child.kill("SIGKILL");
    await holder.exited;
  }
}

interface Watcher {
  chip: string;
  pins: ReadonlySet<number>;
  onChange: PinWatchOptions["onChange"];
  onError: PinWatchOptions["onError"];
}

interface Monitor {
  /** Absent until the line's level has been read. */
  child: ChildProcess | undefined;
  exited: Promise<void>;
  ready: Promise<void>;
  level: GpioLevel;
  /** Stopped on purpose (a write of the line, the last watcher gone): its exit is no error. */
  stopping: boolean;
}

/** A tool that ran and failed (non-zero exit, killed by its timeout). */
class ToolExit extends Error {
  constructor(
    message: string,
    readonly stderr: string,
  ) {
    super(message);
  }
}

function spawnFailure(program: string, error: Error): CorralError {
  if ((error as NodeJS.ErrnoException).code === "ENOENT") {
    return new CorralError(
      ErrorCode.FailedPrecondition,
      `${program} not found: install the libgpiod tools (Debian package "gpiod")`,
      { cause: error },
    );
  }
  return new CorralError(ErrorCode.Unavailable, `cannot run ${program}: ${error.message}`, { cause: error });
}

/** execFile with a timeout and an optional abort signal; no shell. */
function runTool(
  program: string,
  args: string[],
  options: { timeoutMs: number; env: NodeJS.ProcessEnv | undefined; signal?: AbortSignal },
): Promise<ToolResult> {
  return new Promise((resolve, reject) => {
    let aborted = false;
    const child = execFile(
      program,
      args,
      {
        timeout: options.timeoutMs,
        killSignal: "SIGKILL",
        maxBuffer: 1024 * 1024,
        encoding: "utf8",
        ...(options.env === undefined ? {} : { env: options.env }),
      },
      (error, stdout, stderr) => {
        options.signal?.removeEventListener("abort", onAbort);
        if (aborted) {
          reject(new ToolExit(`${path.basename(program)} was cancelled`, stderr));
          return;
        }
        if (error === null) {
          resolve({ stdout, stderr });
          return;
        }
        const failure = error as NodeJS.ErrnoException & { killed?: boolean; code?: unknown };
        if (typeof failure.code === "string") {
          reject(spawnFailure(program, error));
        } else if (failure.killed === true) {
          reject(
            new CorralError(
              ErrorCode.DeadlineExceeded,
              `${path.basename(program)} did not finish within ${options.timeoutMs} ms`,
            ),
          );
        } else {
          reject(new ToolExit(`${path.basename(program)} exited with ${String(failure.code)}`, stderr));
        }
      },
    );
    // A cancelled tool gets SIGTERM, not SIGKILL: gpioset then releases its line in an orderly way, and
    // the promise settles only once it has exited, so the next request of the line does not find it busy.
    function onAbort(): void {
      aborted = true;
      child.kill("SIGTERM");
    }
    if (options.signal?.aborted) onAbort();
    else options.signal?.addEventListener("abort", onAbort, { once: true });
  });
}
