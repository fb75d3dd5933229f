import { readdir } from "node:fs/promises";
import { createRequire } from "node:module";
import path from "node:path";
import { CorralError, ErrorCode } from "../../base/errors.ts";
import { defaults } from "../../defaults.ts";
import { type AnalogBackend, IioAnalog, SimulatedAnalog } from "./analog.ts";
import type { GpioBackend } from "./gpio/gpio-backend.ts";
import type { GpioSelection } from "./gpio/select-backend.ts";
import { type I2cBackend, SimulatedI2c } from "./i2c-backend.ts";
import { I2cDevBus, loadI2cBus } from "./i2c-dev.ts";
import { listPwmchips, PwmController, SysfsPwm } from "./pwm.ts";
import { SimulatedSpi, type SpiBackend, type SpiDeviceModule, SpidevSpi } from "./spi-backend.ts";

export type HardwarePreference = "auto" | "real" | "simulated";

/** One kind of hardware and the backend chosen for it at start (DescribeHardware, HealthCheck). */
export interface BackendChoice {
  kind: "gpio" | "pwm" | "spi" | "i2c" | "analog";
  backend: string;
  simulated: boolean;
  reason: string;
  devices: string[];
}

/** Everything on the node's hardware, each kind with its backend. */
export interface Hardware {
  readonly gpio: GpioBackend;
  readonly pwm: PwmController;
  readonly spi: SpiBackend;
  readonly i2c: I2cBackend;
  readonly analog: AnalogBackend;
  readonly choices: readonly BackendChoice[];
  close(): Promise<void>;
}

export interface CreateHardwareOptions {
  gpio: GpioSelection;
  /** Per kind; default from defaults.agentHardware ("auto": the real driver where the node has the device). */
  prefer?: Partial<Record<"pwm" | "spi" | "i2c" | "analog", HardwarePreference>>;
  /** Default "/dev". */
  devDir?: string;
  /** Default "/sys". */
  sysDir?: string;
  onWarning?: (message: string) => void;
  /** For tests: the native modules (default: npm i2c-bus and spi-device, loaded only when needed). */
  loadI2c?: typeof loadI2cBus;
  loadSpi?: () => SpiDeviceModule;
}

async function listDev(dir: string, pattern: RegExp): Promise<string[]> {
  try {
    return (await readdir(dir)).filter((name) => pattern.test(name)).sort();
  } catch {
    return [];
  }
}

const why = (error: unknown) => (error instanceof Error ? error.message : String(error));

/**
 * Picks a backend for each kind of hardware once, at start: the kernel's device where the node has it
 * (/dev/i2c-*, /dev/spidev*, /sys/class/pwm/pwmchip*, /sys/bus/iio/devices/iio:device*) and its driver
 * loads, a simulated one otherwise. "real" fails the start instead of simulating (FAILED_PRECONDITION).
 */
export async function createHardware(options: CreateHardwareOptions): Promise<Hardware> {
  const devDir = options.devDir ?? "/dev";
  const sysDir = options.sysDir ?? "/sys";
  const hw = defaults.agentHardware;
  const prefer = (kind: "pwm" | "spi" | "i2c" | "analog"): HardwarePreference =>
    options.prefer?.[kind] ?? (hw[kind] as HardwarePreference);
  const refuse = (kind: string, reason: string): never => {
    throw new CorralError(ErrorCode.FailedPrecondition, `${kind}: ${reason}`);
  };
  const choices: BackendChoice[] = [
    {
      kind: "gpio",
      backend: options.gpio.kind,
      simulated: options.gpio.kind === "simulated",
      reason: options.gpio.reason,
      devices: [...options.gpio.backend.chips],
    },
  ];

  // I²C
  let i2c: I2cBackend | undefined;
  const i2cNodes = await listDev(devDir, /^i2c-\d+$/);
  if (prefer("i2c") === "simulated") {
    choices.push({
      kind: "i2c",
      backend: "simulated",
      simulated: true,
      reason: "simulated I²C by configuration",
      devices: [],
    });
  } else if (i2cNodes.length === 0) {
    const reason = `no I²C bus (${path.join(devDir, "i2c-*")})`;
    if (prefer("i2c") === "real") refuse("I²C", reason);
    choices.push({
      kind: "i2c",
      backend: "simulated",
      simulated: true,
      reason: `simulated I²C: ${reason}`,
      devices: [],
    });
  } else {
    try {
      i2c = new I2cDevBus(
        i2cNodes.map((name) => Number(name.slice(4))).sort((a, b) => a - b),
        (options.loadI2c ?? loadI2cBus)(),
      );
      choices.push({
        kind: "i2c",
        backend: "i2c-dev",
        simulated: false,
        reason: `kernel i2c-dev: ${i2cNodes.map((n) => `/dev/${n}`).join(", ")}`,
        devices: i2cNodes.map((n) => `/dev/${n}`),
      });
    } catch (error) {
      if (prefer("i2c") === "real") refuse("I²C", `the i2c-bus module failed to load: ${why(error)}`);
      options.onWarning?.(`I²C: the i2c-bus module failed to load (${why(error)}); simulating`);
      choices.push({
        kind: "i2c",
        backend: "simulated",
        simulated: true,
        reason: `simulated I²C: the i2c-bus module failed to load: ${why(error)}`,
        devices: [],
      });
    }
  }
  if (i2c === undefined) {
    i2c = new SimulatedI2c();
    (choices.at(-1) as BackendChoice).devices = i2c.buses.map((bus) => `sim-i2c-${bus}`);
  }

  // SPI
  let spi: SpiBackend | undefined;
  const spiNodes = await listDev(devDir, /^spidev\d+\.\d+$/);
  if (prefer("spi") === "simulated") {
    choices.push({
      kind: "spi",
      backend: "simulated",
      simulated: true,
      reason: "simulated SPI by configuration",
      devices: [],
    });
  } else if (spiNodes.length === 0) {
    const reason = `no SPI device (${path.join(devDir, "spidev*")})`;
    if (prefer("spi") === "real") refuse("SPI", reason);
    choices.push({
      kind: "spi",
      backend: "simulated",
      simulated: true,
      reason: `simulated SPI: ${reason}`,
      devices: [],
    });
  } else {
    try {
      const module = options.loadSpi?.() ?? (createRequire(import.meta.url)("spi-device") as SpiDeviceModule);
      spi = new SpidevSpi(
        spiNodes.map((name) => name.slice("spidev".length)),
        module,
      );
      choices.push({
        kind: "spi",
        backend: "spidev",
        simulated: false,
        reason: `kernel spidev: ${spiNodes.map((n) => `/dev/${n}`).join(", ")}`,
        devices: spiNodes.map((n) => `/dev/${n}`),
      });
    } catch (error) {
      if (prefer("spi") === "real") refuse("SPI", `the spi-device module failed to load: ${why(error)}`);
      options.onWarning?.(`SPI: the spi-device module failed to load (${why(error)}); simulating`);
      choices.push({
        kind: "spi",
        backend: "simulated",
        simulated: true,
        reason: `simulated SPI: the spi-device module failed to load: ${why(error)}`,
        devices: [],
      });
    }
  }
  if (spi === undefined) {
    spi = new SimulatedSpi();
    (choices.at(-1) as BackendChoice).devices = spi.devices.map((d) => `sim-spidev${d}`);
  }

  // PWM: the controller always exists; without a pwmchip every line gets software PWM.
  const pwmRoot = path.join(sysDir, "class", "pwm");
  const pwmchips = prefer("pwm") === "simulated" ? [] : await listPwmchips(pwmRoot);
  if (pwmchips.length === 0 && prefer("pwm") === "real")
    refuse("PWM", `no PWM controller (${pwmRoot}/pwmchip*)`);
  const pwm = new PwmController({
    gpio: options.gpio.backend,
    ...(pwmchips.length === 0 ? {} : { sysfs: new SysfsPwm(pwmRoot) }),
    onError: (error) => options.onWarning?.(`software PWM stopped: ${why(error)}`),
  });
  choices.push(
    pwmchips.length === 0
      ? {
          kind: "pwm",
          backend: "software-pwm",
          simulated: options.gpio.kind === "simulated",
          reason:
            prefer("pwm") === "simulated"
              ? "software PWM by configuration"
              : `software PWM on GPIO lines: no PWM controller (${pwmRoot}/pwmchip*)`,
          devices: [],
        }
      : {
          kind: "pwm",
          backend: "sysfs-pwm",
          simulated: false,
          reason: `kernel PWM: ${pwmchips.join(", ")} (GPIO 12/18 → pwm0, 13/19 → pwm1; software PWM elsewhere)`,
          devices: pwmchips,
        },
  );

  // Analog
  const iioRoot = path.join(sysDir, "bus", "iio", "devices");
  const iio = prefer("analog") === "simulated" ? [] : await IioAnalog.list(iioRoot);
  let analog: AnalogBackend;
  if (iio.length === 0) {
    if (prefer("analog") === "real") refuse("analog", `no IIO device (${iioRoot}/iio:device*)`);
    analog = new SimulatedAnalog();
    choices.push({
      kind: "analog",
      backend: "simulated",
      simulated: true,
      reason:
        prefer("analog") === "simulated"
          ? "simulated ADC by configuration"
          : `simulated ADC: no IIO device (${iioRoot}/iio:device*)`,
      devices: [...analog.devices],
    });
  } else {
    analog = new IioAnalog(iioRoot, iio);
    choices.push({
      kind: "analog",
      backend: "iio",
      simulated: false,
      reason: `kernel IIO: ${iio.join(", ")}`,
      devices: iio,
    });
  }

  const gpio = options.gpio.backend;
  const i2cBackend = i2c;
  const spiBackend = spi;
  return {
    gpio,
    pwm,
    spi: spiBackend,
    i2c: i2cBackend,
    analog,
    choices,
    async close() {
      await pwm.close();
      await Promise.all([spiBackend.close(), i2cBackend.close()]);
      await gpio.close();
    },
  };
}
