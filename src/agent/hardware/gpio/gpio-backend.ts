import { CorralError, ErrorCode } from "../../../base/errors.ts";

/** A line's logical level. */
export type GpioLevel = 0 | 1;

/** "gpiochip": the kernel GPIO character device (libgpiod); "simulated": an in-memory bank. */
export type GpioBackendKind = "gpiochip" | "simulated";

export type PinDirection = "input" | "output";
export type PinPull = "none" | "up" | "down";
export type PinEdge = "none" | "rising" | "falling" | "both";

/** How a line is configured. Levels are logical: with `activeLow`, 1 is the low voltage. */
export interface PinSettings {
  direction: PinDirection;
  pull: PinPull;
  activeLow: boolean;
  /** 0: none; a level must stay this long before an edge counts. */
  debounceMs: number;
  /** Which edges of an input the hardware reports. */
  edge: PinEdge;
}

export const defaultPinSettings: Readonly<PinSettings> = {
  direction: "input",
  pull: "none",
  activeLow: false,
  debounceMs: 0,
  edge: "both",
};

export const debounceLimitMs = 1000;

export interface PinStatus {
  chip: string;
  pin: number;
  name?: string;
  settings: PinSettings;
  level: GpioLevel;
  /** Another process holding the line. */
  consumer?: string;
}

/** A line's logical level changed (an edge of an input, or a write of an output). */
export interface PinChange {
  chip: string;
  pin: number;
  level: GpioLevel;
  /** When, in ms since the epoch. */
  at: number;
}

/** A subscription to pin changes; `close` stops it (and any process behind it). */
export interface PinWatch {
  close(): void;
}

export interface PinWatchOptions {
  chip: string;
  /** The lines watched (already validated). */
  pins: readonly number[];
  onChange: (change: PinChange) => void;
  /** The watch broke (the monitoring tool died); no more changes come. */
  onError: (error: Error) => void;
}

/**
 * A bank of GPIO lines, real or simulated. Every method validates its arguments the same way
 * (see `checkPin`, `checkLevel`, `checkPulseMs`, `resolveChip`) and throws CorralError:
 * INVALID_ARGUMENT for a bad pin, level, duration or chip, FAILED_PRECONDITION for a line that another
 * consumer holds, UNAVAILABLE when the hardware or its tools fail.
 */
export interface GpioBackend {
  readonly kind: GpioBackendKind;
  /** The chips this backend drives, the default one first. */
  readonly chips: readonly string[];
  /** How many lines `chip` has (the default chip when omitted or ""). */
  lines(chip?: string): number;
  /** Drives `pin` to `level` as an output and keeps it there; answers the level read back. */
  write(pin: number, level: GpioLevel, chip?: string): Promise<GpioLevel>;
  /** The level of `pin` (a line this backend drives answers the level it drives). */
  read(pin: number, chip?: string): Promise<GpioLevel>;
  /**
   * Drives `pin` to `level` for `ms` milliseconds (1..60 000), then to the opposite level, which it keeps;
   * answers the final level read back. An abort of `signal` cuts the pulse short: the line is still
   * brought to the opposite level, then the call fails with CANCELLED.
   */
  pulse(pin: number, level: GpioLevel, ms: number, chip?: string, signal?: AbortSignal): Promise<GpioLevel>;
  /**
   * Configures a line. An output is driven at once (to `initialLevel`, else the level it had, else 0);
   * an input is let go (a pull decides its level when nothing drives it).
   */
  configure(pin: number, settings: PinSettings, chip?: string, initialLevel?: GpioLevel): Promise<PinStatus>;
  /** A line's configuration and level. */
  status(pin: number, chip?: string): Promise<PinStatus>;
  /** Every line of a chip. */
  list(chip?: string): Promise<PinStatus[]>;
  /** Calls `onChange` for each level change of the watched lines until `close`. */
  watch(options: PinWatchOptions): PinWatch;
  /** A cheap, harmless check that the backend works (touches no line); answers a description. */
  probe(): Promise<string>;
  /** Releases every line and process the backend holds. */
  close(): Promise<void>;
}

export const pulseLimitsMs = { min: 1, max: 60_000 } as const;

/** The chip a request names: "" or undefined means the default (first) chip; an unknown one is refused. */
export function resolveChip(chips: readonly string[], chip: string | undefined): string {
  const first = chips[0];
  if (first === undefined) throw new CorralError(ErrorCode.FailedPrecondition, "no GPIO chip is available");
  if (chip === undefined || chip === "") return first;
  if (!chips.includes(chip)) {
    throw new CorralError(
      ErrorCode.InvalidArgument,
      `chip: no GPIO chip "${chip}" on this node; chips: ${chips.join(", ")}`,
      { details: { field: "chip", chips: chips.join(",") } },
    );
  }
  return chip;
}

/** A pin must be an integer offset of a line of the chip. */
export function checkPin(pin: number, lineCount: number, chip: string): number {
  if (!Number.isInteger(pin) || pin < 0 || pin >= lineCount) {
    throw new CorralError(
      ErrorCode.InvalidArgument,
      `pin: ${pin} is not a line of ${chip}; valid pins are 0..${lineCount - 1}`,
      { details: { field: "pin", min: "0", max: String(lineCount - 1) } },
    );
  }
  return pin;
}

export function checkLevel(level: number): GpioLevel {
  if (level !== 0 && level !== 1) {
    throw new CorralError(
      ErrorCode.InvalidArgument,
      `state: ${level} is not a level; use LOW (0) or HIGH (1)`,
      {
        details: { field: "state" },
      },
    );
  }
  return level;
}

export function checkPulseMs(ms: number): number {
  if (!Number.isInteger(ms) || ms < pulseLimitsMs.min || ms > pulseLimitsMs.max) {
    throw new CorralError(
      ErrorCode.InvalidArgument,
      `pulse_ms: ${ms} is out of range; a pulse lasts ${pulseLimitsMs.min}..${pulseLimitsMs.max} ms`,
      { details: { field: "pulse_ms", min: String(pulseLimitsMs.min), max: String(pulseLimitsMs.max) } },
    );
  }
  return ms;
}

/** Settings with every field checked: debounce 0..1000 ms. */
export function checkSettings(settings: PinSettings): PinSettings {
  if (
    !Number.isInteger(settings.debounceMs) ||
    settings.debounceMs < 0 ||
    settings.debounceMs > debounceLimitMs
  ) {
    throw new CorralError(
      ErrorCode.InvalidArgument,
      `debounce_ms: ${settings.debounceMs} is out of range; 0..${debounceLimitMs} ms`,
      { details: { field: "debounce_ms", min: "0", max: String(debounceLimitMs) } },
    );
  }
  return { ...settings };
}

export function opposite(level: GpioLevel): GpioLevel {
  return level === 1 ? 0 : 1;
}

/** The error for a line that another process holds. */
export function lineBusy(chip: string, pin: number, consumer: string | undefined): CorralError {
  const who = consumer === undefined || consumer === "" ? "another consumer" : `"${consumer}"`;
  return new CorralError(ErrorCode.FailedPrecondition, `${chip} line ${pin} is in use by ${who}`, {
    details: { chip, pin: String(pin), consumer: consumer ?? "" },
  });
}

export function cancelled(what: string): CorralError {
  return new CorralError(ErrorCode.Canceled, `${what} was cancelled`);
}

/**
 * One operation at a time per line: a write that arrives during a pulse of the same line waits for it.
 * Different lines never wait for each other.
 */
export class LineLocks {
  readonly #tails = new Map<string, Promise<void>>();

  async run<T>(key: string, task: () => Promise<T>): Promise<T> {
    const previous = this.#tails.get(key) ?? Promise.resolve();
    let release: () => void = () => {};
    const mine = new Promise<void>((resolve) => {
      release = resolve;
    });
    const tail = previous.then(() => mine);
    this.#tails.set(key, tail);
    await previous;
    try {
      return await task();
    } finally {
      release();
      if (this.#tails.get(key) === tail) this.#tails.delete(key);
    }
  }
}

/** Waits `ms`, or less when `signal` aborts (then answers false). Leaves no timer behind. */
export function abortableDelay(ms: number, signal: AbortSignal | undefined): Promise<boolean> {
  if (signal?.aborted === true) return Promise.resolve(false);
  return new Promise((resolve) => {
    const onAbort = () => {
      clearTimeout(timer);
      resolve(false);
    };
    const timer = setTimeout(() => {
      signal?.removeEventListener("abort", onAbort);
      resolve(true);
    }, ms);
    signal?.addEventListener("abort", onAbort, { once: true });
  });
}
