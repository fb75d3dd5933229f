import { mkdir, readFile, rename, writeFile } from "node:fs/promises";
import path from "node:path";
import { defaults } from "../../../defaults.ts";
import {
  abortableDelay,
  cancelled,
  checkLevel,
  checkPin,
  checkPulseMs,
  type GpioBackend,
  type GpioLevel,
  LineLocks,
  lineBusy,
  opposite,
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

/**
 * A simulated pin bank: every line reads 0 until driven, a driven line keeps its level (in memory and,
 * with `statePath`, on disk, so an agent restart keeps pin states). A line can be marked as held by
 * another process (`hold`) to exercise the FAILED_PRECONDITION path.
 */
export class SimulatedGpio implements GpioBackend {
  readonly kind = "simulated" as const;
  readonly chips: readonly string[];
  readonly #lines: number;
  readonly #levels = new Map<string, Map<number, GpioLevel>>();
  readonly #held = new Map<string, string>();
  readonly #locks = new LineLocks();
  readonly #statePath: string | undefined;
  readonly #warn: (message: string) => void;
  #persistError: string | undefined;
  #persisting: Promise<void> = Promise.resolve();
  #closed = false;

  private constructor(options: SimulatedGpioOptions) {
    this.chips = [...(options.chips ?? ["gpiochip0"])];
    this.#lines = options.lines ?? defaults.agentHardware.simulatedGpioLines;
    if (this.chips.length === 0) throw new Error("a simulated GPIO bank needs at least one chip");
    if (!Number.isInteger(this.#lines) || this.#lines < 1)
      throw new Error("lines must be a positive integer");
    for (const chip of this.chips) this.#levels.set(chip, new Map());
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

  async write(pin: number, level: GpioLevel, chip?: string): Promise<GpioLevel> {
    const { name, offset } = this.#line(pin, chip);
    checkLevel(level);
    return this.#locks.run(`${name}:${offset}`, async () => {
      this.#checkFree(name, offset);
      this.#set(name, offset, level);
      await this.#persist();
      return this.#get(name, offset);
    });
  }

  async read(pin: number, chip?: string): Promise<GpioLevel> {
    const { name, offset } = this.#line(pin, chip);
    return this.#locks.run(`${name}:${offset}`, async () => {
      this.#checkFree(name, offset);
      return this.#get(name, offset);
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
      this.#set(name, offset, level);
      const completed = await abortableDelay(ms, signal);
      this.#set(name, offset, opposite(level));
      await this.#persist();
      if (!completed) throw cancelled("the pulse");
      return this.#get(name, offset);
    });
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
    await this.#persisting;
  }

  #line(pin: number, chip: string | undefined): { name: string; offset: number } {
    const name = resolveChip(this.chips, chip);
    return { name, offset: checkPin(pin, this.#lines, name) };
  }

  #checkFree(chip: string, pin: number): void {
    const consumer = this.#held.get(`${chip}:${pin}`);
    if (consumer !== undefined) throw lineBusy(chip, pin, consumer);
  }

  #get(chip: string, pin: number): GpioLevel {
    return this.#levels.get(chip)?.get(pin) ?? 0;
  }

  #set(chip: string, pin: number, level: GpioLevel): void {
    this.#levels.get(chip)?.set(pin, level);
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
      const levels = this.#levels.get(chip);
      if (levels === undefined) continue;
      for (const [pin, level] of Object.entries(pins)) {
        const offset = Number(pin);
        if (Number.isInteger(offset) && offset >= 0 && offset < this.#lines) levels.set(offset, level);
      }
    }
  }

  /** Writes the levels atomically (temporary file, then rename); writes never interleave. */
  #persist(): Promise<void> {
    const statePath = this.#statePath;
    if (statePath === undefined) return Promise.resolve();
    const snapshot: StateFile = { version: 1, chips: {} };
    for (const [chip, levels] of this.#levels) {
      snapshot.chips[chip] = Object.fromEntries([...levels].map(([pin, level]) => [String(pin), level]));
    }
    const text = `${JSON.stringify(snapshot, null, 2)}\n`;
    this.#persisting = this.#persisting.then(async () => {
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
