import { access, readdir, readFile, writeFile } from "node:fs/promises";
import path from "node:path";
import { CorralError } from "../../base/errors.ts";
import {
  checkFraction,
  checkRange,
  deviceFailure,
  hardwareLimits,
} from "../../core/devices/device-limits.ts";
import { type GpioBackend, type GpioLevel, LineLocks, resolveChip } from "./gpio/gpio-backend.ts";

export interface PwmSetting {
  enabled: boolean;
  frequencyHz: number;
  dutyCycle: number;
}

export interface PwmStatus extends PwmSetting {
  chip: string;
  pin: number;
  hardware: boolean;
  /** "pwmchip0/pwm1" for hardware PWM; "software" otherwise. */
  channel: string;
}

/** Which PWM controller channel a GPIO line is muxed to (a Raspberry Pi: 12/18 → pwm0, 13/19 → pwm1). */
export interface PwmChannel {
  pwmchip: string;
  channel: number;
}

export const raspberryPiPwmMap: Readonly<Record<number, PwmChannel>> = {
  12: { pwmchip: "pwmchip0", channel: 0 },
  18: { pwmchip: "pwmchip0", channel: 0 },
  13: { pwmchip: "pwmchip0", channel: 1 },
  19: { pwmchip: "pwmchip0", channel: 1 },
};

/**
 * Hardware PWM through the kernel's sysfs interface (/sys/class/pwm/pwmchipN): the channel is exported
 * once, then period and duty_cycle (nanoseconds) and enable are written in an order the kernel accepts
 * (duty never above period).
 */
export class SysfsPwm {
  readonly root: string;

  constructor(root = "/sys/class/pwm") {
    this.root = root;
  }

  async set(channel: PwmChannel, setting: PwmSetting): Promise<void> {
    const dir = await this.#export(channel);
    const what = `${channel.pwmchip}/pwm${channel.channel}`;
    try {
      if (!setting.enabled) {
        await writeFile(path.join(dir, "enable"), "0");
        return;
      }
      const period = Math.round(1e9 / setting.frequencyHz);
      const duty = Math.round(period * setting.dutyCycle);
      const current = Number((await readFile(path.join(dir, "period"), "utf8")).trim()) || 0;
      // The kernel refuses a duty cycle above the period: shrink duty first when the period shrinks.
      if (period < current) {
        await writeFile(path.join(dir, "duty_cycle"), "0");
        await writeFile(path.join(dir, "period"), String(period));
      } else {
        await writeFile(path.join(dir, "period"), String(period));
      }
      await writeFile(path.join(dir, "duty_cycle"), String(duty));
      await writeFile(path.join(dir, "enable"), "1");
    } catch (error) {
      throw deviceFailure(what, error);
    }
  }

  async get(channel: PwmChannel): Promise<PwmSetting | undefined> {
    const dir = path.join(this.root, channel.pwmchip, `pwm${channel.channel}`);
    try {
      const [period, duty, enable] = await Promise.all(
        ["period", "duty_cycle", "enable"].map(async (file) =>
          (await readFile(path.join(dir, file), "utf8")).trim(),
        ),
      );
      const periodNs = Number(period);
      return {
        enabled: enable === "1",
        frequencyHz: periodNs > 0 ? 1e9 / periodNs : 0,
        dutyCycle: periodNs > 0 ? Number(duty) / periodNs : 0,
      };
    } catch {
      return undefined;
    }
  }

  async #export(channel: PwmChannel): Promise<string> {
    const chipDir = path.join(this.root, channel.pwmchip);
    const dir = path.join(chipDir, `pwm${channel.channel}`);
    try {
      await access(dir);
      return dir;
    } catch {
      // not exported yet
    }
    try {
      await writeFile(path.join(chipDir, "export"), String(channel.channel));
      await access(dir);
    } catch (error) {
      throw deviceFailure(`${channel.pwmchip}/pwm${channel.channel}`, error);
    }
    return dir;
  }
}

interface SoftChannel {
  setting: PwmSetting;
  timer: NodeJS.Timeout | undefined;
  /** Bumped on every change: a toggle of an older generation stops. */
  generation: number;
}

/**
 * PWM on a node: hardware PWM (sysfs) on lines muxed to a PWM controller, software PWM (a timer toggling
 * the GPIO line, at most 100 Hz; 5 Hz on the libgpiod tools, which restart a gpioset per edge) on every
 * other line. Software PWM is only as steady as the event loop:
 * fine for LEDs and slow actuators, not for servos.
 */
export class PwmController {
  readonly #gpio: GpioBackend;
  readonly #sysfs: SysfsPwm | undefined;
  readonly #map: Readonly<Record<number, PwmChannel>>;
  readonly #soft = new Map<string, SoftChannel>();
  readonly #hard = new Map<string, PwmSetting>();
  readonly #locks = new LineLocks();
  readonly #onError: (error: unknown) => void;

  constructor(options: {
    gpio: GpioBackend;
    /** Absent: the node has no PWM controller; every line gets software PWM. */
    sysfs?: SysfsPwm;
    map?: Readonly<Record<number, PwmChannel>>;
    onError?: (error: unknown) => void;
  }) {
    this.#gpio = options.gpio;
    this.#sysfs = options.sysfs;
    this.#map = options.map ?? raspberryPiPwmMap;
    this.#onError = options.onError ?? (() => {});
  }

  get kind(): "sysfs-pwm" | "software-pwm" {
    return this.#sysfs === undefined ? "software-pwm" : "sysfs-pwm";
  }

  /** Whether `pin` is driven by the hardware controller. */
  isHardware(chip: string, pin: number): boolean {
    return this.#sysfs !== undefined && chip === this.#gpio.chips[0] && this.#map[pin] !== undefined;
  }

  /** Whether a PWM signal is on the line now. */
  active(chip: string, pin: number): boolean {
    const key = `${chip}:${pin}`;
    return (this.#soft.get(key)?.setting.enabled ?? false) || (this.#hard.get(key)?.enabled ?? false);
  }

  async set(pin: number, setting: PwmSetting, chip?: string): Promise<PwmStatus> {
    const name = resolveChip(this.#gpio.chips, chip);
    if (!Number.isInteger(pin) || pin < 0 || pin >= this.#gpio.lines(name)) {
      throw CorralError.invalidArgument("pin", `${pin} is not a line of ${name}`);
    }
    const hardware = this.isHardware(name, pin);
    checkFraction("duty_cycle", setting.dutyCycle);
    if (setting.enabled) {
      checkRange(
        "frequency_hz",
        setting.frequencyHz,
        hardware
          ? hardwareLimits.pwmHardwareHz
          : this.#gpio.kind === "gpiochip"
            ? hardwareLimits.pwmSoftwareToolsHz
            : hardwareLimits.pwmSoftwareHz,
      );
    }
    const key = `${name}:${pin}`;
    return this.#locks.run(key, async () => {
      if (hardware) {
        const channel = this.#map[pin] as PwmChannel;
        await (this.#sysfs as SysfsPwm).set(channel, setting);
        this.#hard.set(key, { ...setting });
      } else {
        await this.#software(name, pin, setting);
      }
      return this.get(pin, name);
    });
  }

  async get(pin: number, chip?: string): Promise<PwmStatus> {
    const name = resolveChip(this.#gpio.chips, chip);
    const key = `${name}:${pin}`;
    if (this.isHardware(name, pin)) {
      const channel = this.#map[pin] as PwmChannel;
      const read = (await this.#sysfs?.get(channel)) ??
        this.#hard.get(key) ?? { enabled: false, frequencyHz: 0, dutyCycle: 0 };
      return {
        chip: name,
        pin,
        hardware: true,
        channel: `${channel.pwmchip}/pwm${channel.channel}`,
        ...read,
      };
    }
    const soft = this.#soft.get(key)?.setting ?? { enabled: false, frequencyHz: 0, dutyCycle: 0 };
    return { chip: name, pin, hardware: false, channel: "software", ...soft };
  }

  async close(): Promise<void> {
    for (const channel of this.#soft.values()) {
      channel.generation++;
      clearTimeout(channel.timer);
    }
    this.#soft.clear();
  }

  async #software(chip: string, pin: number, setting: PwmSetting): Promise<void> {
    const key = `${chip}:${pin}`;
    const channel = this.#soft.get(key) ?? { setting, timer: undefined, generation: 0 };
    channel.generation++;
    clearTimeout(channel.timer);
    channel.timer = undefined;
    channel.setting = { ...setting };
    this.#soft.set(key, channel);
    if (!setting.enabled || setting.dutyCycle === 0 || setting.dutyCycle === 1) {
      // Off, always low or always high: a steady level, no timer.
      await this.#gpio.write(pin, setting.enabled && setting.dutyCycle === 1 ? 1 : 0, chip);
      if (!setting.enabled) this.#soft.delete(key);
      return;
    }
    const generation = channel.generation;
    const periodMs = 1000 / setting.frequencyHz;
    const highMs = periodMs * setting.dutyCycle;
    const toggle = (level: GpioLevel) => {
      if (channel.generation !== generation) return;
      this.#gpio.write(pin, level, chip).then(
        () => {
          if (channel.generation !== generation) return;
          channel.timer = setTimeout(
            () => toggle(level === 1 ? 0 : 1),
            level === 1 ? highMs : periodMs - highMs,
          );
          channel.timer.unref();
        },
        (error: unknown) => {
          channel.generation++;
          this.#soft.delete(key);
          this.#onError(error);
        },
      );
    };
    toggle(1);
  }
}

/** The PWM controllers under `root` (pwmchipN), or none. */
export async function listPwmchips(root: string): Promise<string[]> {
  try {
    return (await readdir(root)).filter((name) => /^pwmchip\d+$/.test(name)).sort();
  } catch {
    return [];
  }
}
