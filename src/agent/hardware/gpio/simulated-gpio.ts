import { mkdir, readFile, rename, writeFile } from "node:fs/promises";
import path from "node:path";
import { defaults } from "../../../defaults.ts";
import {
  abortableDelay,
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
  type PinChange,
  type PinSettings,
  type PinStatus,
  type PinWatch,
  type PinWatchOptions,
  resolveChip,
} from "./gpio-backend.ts";

export interface SimulatedGpioOptions {
  /** Chip names, the default first; default ["gpiochip0"]. */
  chips?: readonly string[];
  /** Lines per chip; default 54 (a Raspberry Pi's BCM lines). */
  lines?: number;
  /** JSON file that keeps driven levels across restarts; none: levels live in memory only. */
  statePath?: string;
  /** Told when the state file cannot be read or written. */
  onWarning?: (message: string) => void;
}

interface StateFile {
  version: 1;
  /** chip → pin (as a string) → level */
  chips: Record<string, Record<string, GpioLevel>>;
}

interface SimLine {
  settings: PinSettings;
  /** Logical level an output drives. */
  driven: GpioLevel;
  /** Physical level something outside drives onto the line (a button, a sensor); none: floating. */
  external: GpioLevel | undefined;
  /** The physical level the line settled at (after debounce). */
  physical: GpioLevel;
  debounce: NodeJS.Timeout | undefined;
}

interface SimWatcher {
  chip: string;
  pins: ReadonlySet<number>;
  onChange: (change: PinChange) => void;
}

/**
 * A simulated pin bank that behaves like the real one: lines are inputs until driven or configured as
 * outputs; an input reads what something outside drives onto it (`drive`), else what its pull gives, else
 * the level it last had (a floating line); active-low inverts; debounce holds an input's edge until the
 * level has been stable that long; every change of a line's logical level is an edge for watchers. Output
 * levels are kept (in memory and, with `statePath`, on disk, so an agent restart keeps pin states). A line
 * can be marked as held by another process (`hold`) to exercise the FAILED_PRECONDITION path.
 */
export class SimulatedGpio implements GpioBackend {
  readonly kind = "simulated" as const;
  readonly chips: readonly string[];
  readonly #lines: number;
  readonly #bank = new Map<string, Map<number, SimLine>>();
  readonly #held = new Map<string, string>();
  readonly #locks = new LineLocks();
  readonly #watchers = new Set<SimWatcher>();
  readonly #statePath: string | undefined;
  readonly #warn: (message: string) => void;
  #persistError: string | undefined;
  #persisting: Promise<void> = Promise.resolve();
  #persistQueued = false;
  #closed = false;

  private constructor(options: SimulatedGpioOptions) {
    this.chips = [...(options.chips ?? ["gpiochip0"])];
    this.#lines = options.lines ?? defaults.agentHardware.simulatedGpioLines;
    if (this.chips.length === 0) throw new Error("a simulated GPIO bank needs at least one chip");
    if (!Number.isInteger(this.#lines) || this.#lines < 1)
      throw new Error("lines must be a positive integer");
    for (const chip of this.chips) this.#bank.set(chip, new Map());
    this.#statePath = options.statePath;
    this.#warn = options.onWarning ?? (() => {});
  }

  /** A bank, with the levels kept in `statePath` restored. */
  static async open(options: SimulatedGpioOptions = {}): Promise<SimulatedGpio> {
    const bank = new SimulatedGpio(options);
    await bank.#load();
    return bank;
  }

  lines(chip?: string): number {
    resolveChip(this.chips, chip);
    return this.#lines;
  }

  /** Marks a line as held by another process (as the kernel would report it), for tests. */
  hold(pin: number, consumer: string, chip?: string): void {
    const name = resolveChip(this.chips, chip);
    this.#held.set(`${name}:${checkPin(pin, this.#lines, name)}`, consumer);
  }

  release(pin: number, chip?: string): void {
    const name = resolveChip(this.chips, chip);
    this.#held.delete(`${name}:${pin}`);
  }

  /**
   * Drives the physical level of a line from outside (undefined: lets it float), as a button or a sensor
   * would. An input sees it (after its debounce); an output keeps driving its own level.
   */
  drive(pin: number, level: GpioLevel | undefined, chip?: string): void {
    const { name, offset } = this.#line(pin, chip);
    const line = this.#sim(name, offset);
    line.external = level === undefined ? undefined : checkLevel(level);
    this.#settle(name, offset, line, false);
  }

  async write(pin: number, level: GpioLevel, chip?: string): Promise<GpioLevel> {
    const { name, offset } = this.#line(pin, chip);
    checkLevel(level);
    return this.#locks.run(`${name}:${offset}`, async () => {
      this.#checkFree(name, offset);
      const line = this.#sim(name, offset);
      line.settings = { ...line.settings, direction: "output" };
      line.driven = level;
      this.#settle(name, offset, line, true);
      await this.#persist();
      return this.#logical(line);
    });
  }

  async read(pin: number, chip?: string): Promise<GpioLevel> {
    const { name, offset } = this.#line(pin, chip);
    return this.#locks.run(`${name}:${offset}`, async () => {
      this.#checkFree(name, offset);
      return this.#logical(this.#sim(name, offset));
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
      this.#checkFree(name, offset);
      if (signal?.aborted === true) throw cancelled("the pulse");
      const line = this.#sim(name, offset);
      line.settings = { ...line.settings, direction: "output" };
      line.driven = level;
      this.#settle(name, offset, line, true);
      const completed = await abortableDelay(ms, signal);
      line.driven = opposite(level);
      this.#settle(name, offset, line, true);
      await this.#persist();
      if (!completed) throw cancelled("the pulse");
      return this.#logical(line);
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
    return this.#locks.run(`${name}:${offset}`, async () => {
      this.#checkFree(name, offset);
      const line = this.#sim(name, offset);
      const wasOutput = line.settings.direction === "output";
      const before = this.#logical(line);
      line.settings = checked;
      if (checked.direction === "output") {
        line.driven = initialLevel ?? (wasOutput ? line.driven : before);
        // Switching to an output drives at once: no debounce.
        this.#settle(name, offset, line, true);
      } else {
        this.#settle(name, offset, line, true);
      }
      await this.#persist();
      return this.#status(name, offset, line);
    });
  }

  async status(pin: number, chip?: string): Promise<PinStatus> {
    const { name, offset } = this.#line(pin, chip);
    return this.#status(name, offset, this.#sim(name, offset));
  }

  async list(chip?: string): Promise<PinStatus[]> {
    const name = resolveChip(this.chips, chip);
    return Array.from({ length: this.#lines }, (_, offset) =>
      this.#status(name, offset, this.#sim(name, offset)),
    );
  }

  watch(options: PinWatchOptions): PinWatch {
    const watcher: SimWatcher = {
      chip: options.chip,
      pins: new Set(options.pins),
      onChange: options.onChange,
    };
    this.#watchers.add(watcher);
    return { close: () => this.#watchers.delete(watcher) };
  }

  async probe(): Promise<string> {
    if (this.#closed) throw new Error("the simulated GPIO bank is closed");
    if (this.#persistError !== undefined) {
      throw new Error(`cannot save pin states to ${this.#statePath}: ${this.#persistError}`);
    }
    const where = this.#statePath === undefined ? "in memory" : `kept in ${this.#statePath}`;
    return `simulated bank: ${this.chips.join(", ")}, ${this.#lines} lines each, levels ${where}`;
  }

  async close(): Promise<void> {
    this.#closed = true;
    this.#watchers.clear();
    for (const lines of this.#bank.values()) {
      for (const line of lines.values()) clearTimeout(line.debounce);
    }
    await this.#persisting;
  }

  #line(pin: number, chip: string | undefined): { name: string; offset: number } {
    const name = resolveChip(this.chips, chip);
    return { name, offset: checkPin(pin, this.#lines, name) };
  }

  #sim(chip: string, pin: number): SimLine {
    const lines = this.#bank.get(chip) as Map<number, SimLine>;
    let line = lines.get(pin);
    if (line === undefined) {
      line = {
        settings: { ...defaultPinSettings },
        driven: 0,
        external: undefined,
        physical: 0,
        debounce: undefined,
      };
      lines.set(pin, line);
    }
    return line;
  }

  #checkFree(chip: string, pin: number): void {
    const consumer = this.#held.get(`${chip}:${pin}`);
    if (consumer !== undefined) throw lineBusy(chip, pin, consumer);
  }

  #logical(line: SimLine): GpioLevel {
    return (line.physical ^ (line.settings.activeLow ? 1 : 0)) as GpioLevel;
  }

  /** The physical level the line's drivers and pull make now. */
  #target(line: SimLine): GpioLevel {
    if (line.settings.direction === "output") {
      return (line.driven ^ (line.settings.activeLow ? 1 : 0)) as GpioLevel;
    }
    if (line.external !== undefined) return line.external;
    if (line.settings.pull === "up") return 1;
    if (line.settings.pull === "down") return 0;
    return line.physical;
  }

  /** Moves the line to its target level (after the debounce for an input, unless `now`), telling watchers. */
  #settle(chip: string, pin: number, line: SimLine, now: boolean): void {
    const before = this.#logical(line);
    const target = this.#target(line);
    clearTimeout(line.debounce);
    line.debounce = undefined;
    const debounceMs = line.settings.direction === "input" ? line.settings.debounceMs : 0;
    if (now || debounceMs === 0 || target === line.physical) {
      line.physical = target;
      const after = this.#logical(line);
      if (after !== before) this.#notify(chip, pin, after);
      return;
    }
    line.debounce = setTimeout(() => {
      line.debounce = undefined;
      this.#settle(chip, pin, line, true);
    }, debounceMs);
    line.debounce.unref();
  }

  #notify(chip: string, pin: number, level: GpioLevel): void {
    const change: PinChange = { chip, pin, level, at: Date.now() };
    for (const watcher of this.#watchers) {
      if (watcher.chip === chip && watcher.pins.has(pin)) watcher.onChange(change);
    }
  }

  #status(chip: string, pin: number, line: SimLine): PinStatus {
    const consumer = this.#held.get(`${chip}:${pin}`);
    return {
      chip,
      pin,
      name: `GPIO${pin}`,
      settings: { ...line.settings },
      level: this.#logical(line),
      ...(consumer === undefined ? {} : { consumer }),
    };
  }

  async #load(): Promise<void> {
    if (this.#statePath === undefined) return;
    let text: string;
    try {
      text = await readFile(this.#statePath, "utf8");
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== "ENOENT") {
        this.#warn(`simulated GPIO: cannot read ${this.#statePath}: ${(error as Error).message}`);
      }
      return;
    }
    const restored = parseStateFile(text);
    if (restored === undefined) {
      this.#warn(`simulated GPIO: ${this.#statePath} is not a pin state file; starting with every line at 0`);
      return;
    }
    for (const [chip, pins] of Object.entries(restored.chips)) {
      if (!this.#bank.has(chip)) continue;
      for (const [pin, level] of Object.entries(pins)) {
        const offset = Number(pin);
        if (!Number.isInteger(offset) || offset < 0 || offset >= this.#lines) continue;
        const line = this.#sim(chip, offset);
        line.settings = { ...line.settings, direction: "output" };
        line.driven = level;
        line.physical = level;
      }
    }
  }

  /**
   * Writes the output levels atomically (temporary file, then rename); writes never interleave, and
   * writes asked for while one runs are folded into one (software PWM toggles a line many times a second).
   */
  #persist(): Promise<void> {
    const statePath = this.#statePath;
    if (statePath === undefined) return Promise.resolve();
    if (this.#persistQueued) return this.#persisting;
    this.#persistQueued = true;
    this.#persisting = this.#persisting.then(async () => {
      this.#persistQueued = false;
      const snapshot: StateFile = { version: 1, chips: {} };
      for (const [chip, lines] of this.#bank) {
        snapshot.chips[chip] = Object.fromEntries(
          [...lines]
            .filter(([, line]) => line.settings.direction === "output")
            .map(([pin, line]) => [String(pin), line.driven]),
        );
      }
      const text = `${JSON.stringify(snapshot, null, 2)}\n`;
      try {
        await mkdir(path.dirname(statePath), { recursive: true });
        const temporary = `${statePath}.${process.pid}.tmp`;
        await writeFile(temporary, text, { mode: 0o600 });
        await rename(temporary, statePath);
        this.#persistError = undefined;
      } catch (error) {
        this.#persistError = (error as Error).message;
        this.#warn(`simulated GPIO: cannot save pin states: ${this.#persistError}`);
      }
    });
    return this.#persisting;
  }
}

/** The saved levels, or undefined when `text` is not a state file this module wrote. */
export function parseStateFile(text: string): StateFile | undefined {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    return undefined;
  }
  if (typeof value !== "object" || value === null) return undefined;
  const file = value as { version?: unknown; chips?: unknown };
  if (file.version !== 1 || typeof file.chips !== "object" || file.chips === null) return undefined;
  const chips: StateFile["chips"] = {};
  for (const [chip, pins] of Object.entries(file.chips)) {
    if (typeof pins !== "object" || pins === null) return undefined;
    const kept: Record<string, GpioLevel> = {};
    for (const [pin, level] of Object.entries(pins)) {
      if (level === 0 || level === 1) kept[pin] = level;
    }
    chips[chip] = kept;
  }
  return { version: 1, chips };
}
