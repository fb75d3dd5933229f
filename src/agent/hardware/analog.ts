import { readdir, readFile } from "node:fs/promises";
import path from "node:path";
import { CorralError, ErrorCode } from "../../base/errors.ts";
import { checkIntIn, deviceFailure } from "../../core/devices/device-limits.ts";

export interface AnalogValue {
  /** Scaled: (raw + offset) × scale, millivolts for a voltage channel. */
  value: number;
  raw: number;
}

/** Analog inputs of a node: ADC channels. */
export interface AnalogBackend {
  readonly kind: "iio" | "simulated";
  /** IIO device names ("iio:device0"), the default first. */
  readonly devices: readonly string[];
  read(device: string, channel: number): Promise<AnalogValue>;
  probe(): Promise<string>;
}

export const maxAnalogChannel = 63;

function resolveDevice(devices: readonly string[], device: string): string {
  const first = devices[0];
  if (first === undefined)
    throw new CorralError(ErrorCode.FailedPrecondition, "no analog input on this node");
  if (device === "") return first;
  if (!devices.includes(device)) {
    throw new CorralError(
      ErrorCode.InvalidArgument,
      `device: no analog device "${device}" on this node; devices: ${devices.join(", ")}`,
      { details: { field: "device" } },
    );
  }
  return device;
}

/**
 * ADCs through the kernel's Industrial I/O sysfs interface (/sys/bus/iio/devices/iio:deviceN):
 * in_voltageC_raw, scaled by in_voltageC_scale (or the shared in_voltage_scale) after adding the offset.
 */
export class IioAnalog implements AnalogBackend {
  readonly kind = "iio" as const;
  readonly devices: readonly string[];
  readonly root: string;

  constructor(root: string, devices: readonly string[]) {
    this.root = root;
    this.devices = [...devices];
  }

  static async list(root: string): Promise<string[]> {
    try {
      return (await readdir(root)).filter((name) => /^iio:device\d+$/.test(name)).sort();
    } catch {
      return [];
    }
  }

  async read(device: string, channel: number): Promise<AnalogValue> {
    const name = resolveDevice(this.devices, device);
    checkIntIn("channel", channel, 0, maxAnalogChannel);
    const dir = path.join(this.root, name);
    const number = async (file: string): Promise<number | undefined> => {
      try {
        const value = Number((await readFile(path.join(dir, file), "utf8")).trim());
        return Number.isFinite(value) ? value : undefined;
      } catch {
        return undefined;
      }
    };
    let raw: number;
    try {
      const text = (await readFile(path.join(dir, `in_voltage${channel}_raw`), "utf8")).trim();
      raw = Number(text);
      if (!Number.isFinite(raw)) throw new Error(`in_voltage${channel}_raw holds "${text}"`);
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === "ENOENT") {
        throw CorralError.invalidArgument("channel", `${name} has no voltage channel ${channel}`);
      }
      throw deviceFailure(`${name} channel ${channel}`, error);
    }
    const scale = (await number(`in_voltage${channel}_scale`)) ?? (await number("in_voltage_scale")) ?? 1;
    const offset = (await number(`in_voltage${channel}_offset`)) ?? (await number("in_voltage_offset")) ?? 0;
    return { raw, value: (raw + offset) * scale };
  }

  async probe(): Promise<string> {
    return `IIO: ${this.devices.join(", ")}`;
  }
}

/**
 * A simulated 12-bit, 8-channel ADC with a 3.3 V reference: channel c carries a sine of (0.5 + c/4) Hz
 * swinging over the full range, so a readings stream shows a waveform; the value is in millivolts.
 */
export class SimulatedAnalog implements AnalogBackend {
  readonly kind = "simulated" as const;
  readonly devices = ["sim-adc0"] as const;
  readonly channels = 8;
  readonly #now: () => number;

  constructor(now: () => number = Date.now) {
    this.#now = now;
  }

  /** The value at time `at` (ms), synchronously: the sampler's hot path. */
  valueAt(channel: number, at: number): AnalogValue {
    const hz = 0.5 + channel / 4;
    const raw = Math.round(2047.5 + 2047.5 * Math.sin(2 * Math.PI * hz * (at / 1000)));
    return { raw, value: (raw * 3300) / 4095 };
  }

  async read(device: string, channel: number): Promise<AnalogValue> {
    resolveDevice(this.devices, device);
    checkIntIn("channel", channel, 0, this.channels - 1);
    return this.valueAt(channel, this.#now());
  }

  async probe(): Promise<string> {
    return `simulated ADC ${this.devices[0]}: ${this.channels} channels, 12-bit, 3.3 V, sine waveforms`;
  }
}
