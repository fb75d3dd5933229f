import assert from "node:assert/strict";
import { mkdir, mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { after, before, describe, it } from "node:test";
import { IioAnalog, SimulatedAnalog } from "../../src/agent/hardware/analog.ts";
import { SimulatedGpio } from "../../src/agent/hardware/gpio/simulated-gpio.ts";
import { createHardware } from "../../src/agent/hardware/hardware.ts";
import { SimulatedI2c } from "../../src/agent/hardware/i2c-backend.ts";
import { I2cDevBus } from "../../src/agent/hardware/i2c-dev.ts";
import { PwmController, SysfsPwm } from "../../src/agent/hardware/pwm.ts";
import { SimulatedSpi, type SpiDeviceModule, SpidevSpi } from "../../src/agent/hardware/spi-backend.ts";
import { CorralError } from "../../src/base/errors.ts";
import { eventually } from "../helpers/agent.ts";

async function rejectsWith(action: () => Promise<unknown>, code: string, message?: RegExp): Promise<void> {
  let caught: unknown;
  try {
    await action();
  } catch (error) {
    caught = error;
  }
  assert.ok(caught instanceof CorralError, `expected ${code}, got ${String(caught)}`);
  assert.equal(caught.code, code, caught.message);
  if (message !== undefined) assert.match(caught.message, message);
}

const errno = (code: string, message: string) => Object.assign(new Error(message), { code });

describe("simulated GPIO behaves like a bank of real lines", () => {
  it("an input follows what drives it from outside, after its debounce; pulls decide a floating line", async () => {
    const gpio = await SimulatedGpio.open();
    const changes: number[] = [];
    gpio.watch({ chip: "gpiochip0", pins: [4], onChange: (c) => changes.push(c.level), onError: () => {} });
    await gpio.configure(4, {
      direction: "input",
      pull: "down",
      activeLow: false,
      debounceMs: 0,
      edge: "both",
    });
    assert.equal(await gpio.read(4), 0);
    gpio.drive(4, 1);
    assert.equal(await gpio.read(4), 1);
    gpio.drive(4, undefined);
    assert.equal(await gpio.read(4), 0, "let go, the pull-down wins");
    await gpio.configure(4, {
      direction: "input",
      pull: "up",
      activeLow: false,
      debounceMs: 30,
      edge: "both",
    });
    assert.equal(await gpio.read(4), 1, "a pull change is no bounce");
    gpio.drive(4, 0);
    gpio.drive(4, 1);
    gpio.drive(4, 0);
    assert.equal(await gpio.read(4), 1, "bouncing: not yet");
    await eventually(async () => ((await gpio.read(4)) === 0 ? true : undefined));
    assert.deepEqual(changes, [1, 0, 1, 0]);
    await gpio.close();
  });

  it("active-low inverts reads and writes; a held line is FAILED_PRECONDITION", async () => {
    const gpio = await SimulatedGpio.open();
    const status = await gpio.configure(
      7,
      { direction: "output", pull: "none", activeLow: true, debounceMs: 0, edge: "none" },
      undefined,
      1,
    );
    assert.equal(status.level, 1);
    gpio.hold(8, "spi0");
    await rejectsWith(() => gpio.write(8, 1), "FAILED_PRECONDITION", /in use by "spi0"/);
    await rejectsWith(
      () =>
        gpio.configure(9, {
          direction: "input",
          pull: "none",
          activeLow: false,
          debounceMs: 1001,
          edge: "both",
        }),
      "INVALID_ARGUMENT",
      /debounce_ms/,
    );
    const list = await gpio.list();
    assert.equal(list.length, 54);
    assert.equal(list[8]?.consumer, "spi0");
    await gpio.close();
  });
});

describe("simulated I²C, SPI and ADC", () => {
  it("I²C: register pointer semantics, validation, NACK and a busy address", async () => {
    const i2c = new SimulatedI2c({ devices: [{ bus: 1, address: 0x48 }] });
    assert.deepEqual([...(await i2c.readRegister(1, 0x48, 0x05, 3))], [5, 6, 7]);
    assert.equal(await i2c.write(1, 0x48, Uint8Array.of(0x10, 0xaa, 0xbb)), 3);
    assert.deepEqual([...(await i2c.readRegister(1, 0x48, 0x10, 2))], [0xaa, 0xbb]);
    await i2c.write(1, 0x48, Uint8Array.of(0x11));
    assert.deepEqual(
      [...(await i2c.read(1, 0x48, 2))],
      [0xbb, 0x12],
      "a plain read continues from the pointer",
    );
    await rejectsWith(
      () => i2c.read(1, 0x02, 1),
      "INVALID_ARGUMENT",
      /address: 0x02 is out of range; valid: 0x03\.\.0x77/,
    );
    await rejectsWith(() => i2c.read(1, 0x78, 1), "INVALID_ARGUMENT");
    await rejectsWith(() => i2c.read(2, 0x48, 1), "INVALID_ARGUMENT", /no I²C bus 2/);
    await rejectsWith(() => i2c.read(1, 0x48, 0), "INVALID_ARGUMENT", /length/);
    await rejectsWith(() => i2c.write(1, 0x48, new Uint8Array(33)), "INVALID_ARGUMENT", /data/);
    await rejectsWith(() => i2c.readRegister(1, 0x48, 256, 1), "INVALID_ARGUMENT", /register/);
    await rejectsWith(() => i2c.read(1, 0x50, 1), "UNAVAILABLE", /no device answers at 0x50/);
    i2c.hold(1, 0x48, "lm75 driver");
    await rejectsWith(() => i2c.read(1, 0x48, 1), "FAILED_PRECONDITION", /busy: in use by lm75 driver/);
  });

  it("SPI: loopback, limits, a busy device", async () => {
    const spi = new SimulatedSpi();
    const sent = Uint8Array.of(1, 2, 3);
    assert.deepEqual(
      [...(await spi.transfer({ bus: 0, chipSelect: 1, data: sent, speedHz: 0, mode: 3 }))],
      [1, 2, 3],
    );
    await rejectsWith(
      () => spi.transfer({ bus: 0, chipSelect: 0, data: new Uint8Array(0), speedHz: 0, mode: 0 }),
      "INVALID_ARGUMENT",
      /data/,
    );
    await rejectsWith(
      () => spi.transfer({ bus: 0, chipSelect: 0, data: new Uint8Array(4097), speedHz: 0, mode: 0 }),
      "INVALID_ARGUMENT",
    );
    await rejectsWith(
      () => spi.transfer({ bus: 0, chipSelect: 0, data: sent, speedHz: 200_000_000, mode: 0 }),
      "INVALID_ARGUMENT",
      /speed_hz/,
    );
    await rejectsWith(
      () => spi.transfer({ bus: 1, chipSelect: 0, data: sent, speedHz: 0, mode: 0 }),
      "INVALID_ARGUMENT",
      /bus/,
    );
    spi.hold(0, 0, "mcp3008");
    await rejectsWith(
      () => spi.transfer({ bus: 0, chipSelect: 0, data: sent, speedHz: 0, mode: 0 }),
      "FAILED_PRECONDITION",
    );
  });

  it("ADC: a sine per channel within 0..3300 mV", async () => {
    const adc = new SimulatedAnalog(() => 250);
    const quarter = adc.valueAt(0, 500); // 0.5 Hz: a quarter period at 500 ms
    assert.equal(quarter.raw, 4095);
    assert.equal(adc.valueAt(0, 0).raw, 2048);
    assert.ok((await adc.read("", 0)).value > 1650);
    await rejectsWith(() => adc.read("", 8), "INVALID_ARGUMENT", /channel/);
    await rejectsWith(() => adc.read("iio:device9", 0), "INVALID_ARGUMENT", /device/);
  });
});

/**
 * The real drivers at the layer below them: PWM and IIO are sysfs files, so they run against directories
 * the test prepares shaped like /sys/class/pwm and /sys/bus/iio/devices; i2c-dev and spidev are ioctls on
 * device nodes this machine lacks (no i2c-stub, no spidev), so the driver code runs over a stand-in of the
 * npm binding that fails the way the kernel does (errno codes).
 */
describe("real drivers against prepared sysfs trees and stand-in bindings", () => {
  let root: string;
  before(async () => {
    root = await mkdtemp(path.join(os.tmpdir(), "corral-hw-"));
  });
  after(async () => {
    await rm(root, { recursive: true, force: true });
  });

  it("sysfs PWM: exports the channel, writes period, duty and enable in nanoseconds", async () => {
    const pwmRoot = path.join(root, "sys", "class", "pwm");
    const chip = path.join(pwmRoot, "pwmchip0");
    await mkdir(chip, { recursive: true });
    await writeFile(path.join(chip, "npwm"), "2\n");
    await writeFile(path.join(chip, "export"), "");
    await rejectsWith(
      () =>
        new SysfsPwm(pwmRoot).set(
          { pwmchip: "pwmchip0", channel: 1 },
          { enabled: true, frequencyHz: 1000, dutyCycle: 0.5 },
        ),
      "UNAVAILABLE",
      /pwmchip0\/pwm1/,
    );
    assert.equal(
      await readFile(path.join(chip, "export"), "utf8"),
      "1",
      "asked the kernel to export channel 1",
    );
    // The kernel makes pwmN on export; the prepared tree has it for channel 0.
    const channel = path.join(chip, "pwm0");
    await mkdir(channel);
    for (const file of ["period", "duty_cycle", "enable"]) await writeFile(path.join(channel, file), "0\n");
    const gpio = await SimulatedGpio.open();
    const pwm = new PwmController({ gpio, sysfs: new SysfsPwm(pwmRoot) });
    const state = await pwm.set(18, { enabled: true, frequencyHz: 1000, dutyCycle: 0.25 });
    assert.deepEqual(
      await Promise.all(
        ["period", "duty_cycle", "enable"].map((f) => readFile(path.join(channel, f), "utf8")),
      ),
      ["1000000", "250000", "1"],
    );
    assert.equal(state.hardware, true);
    assert.equal(state.channel, "pwmchip0/pwm0");
    assert.equal(state.frequencyHz, 1000);
    assert.equal(state.dutyCycle, 0.25);
    await rejectsWith(
      () => pwm.set(18, { enabled: true, frequencyHz: 60_000_000, dutyCycle: 0.5 }),
      "INVALID_ARGUMENT",
    );
    await pwm.set(18, { enabled: false, frequencyHz: 0, dutyCycle: 0 });
    assert.equal(await readFile(path.join(channel, "enable"), "utf8"), "0");
    const soft = await pwm.get(17);
    assert.equal(soft.hardware, false, "line 17 has no PWM controller: software");
    await pwm.close();
    await gpio.close();
  });

  it("IIO: raw × scale + offset, per-channel or shared scale", async () => {
    const iioRoot = path.join(root, "sys", "bus", "iio", "devices");
    const device = path.join(iioRoot, "iio:device0");
    await mkdir(device, { recursive: true });
    await writeFile(path.join(device, "in_voltage0_raw"), "1000\n");
    await writeFile(path.join(device, "in_voltage_scale"), "0.805664062\n");
    await writeFile(path.join(device, "in_voltage1_raw"), "10\n");
    await writeFile(path.join(device, "in_voltage1_scale"), "2\n");
    await writeFile(path.join(device, "in_voltage1_offset"), "-5\n");
    const adc = new IioAnalog(iioRoot, await IioAnalog.list(iioRoot));
    assert.deepEqual(adc.devices, ["iio:device0"]);
    const v0 = await adc.read("", 0);
    assert.equal(v0.raw, 1000);
    assert.ok(Math.abs(v0.value - 805.664062) < 1e-6);
    assert.deepEqual(await adc.read("iio:device0", 1), { raw: 10, value: 10 });
    await rejectsWith(() => adc.read("", 2), "INVALID_ARGUMENT", /no voltage channel 2/);
  });

  it("i2c-dev: opens the bus per call, closes it after, and maps errno to statuses", async () => {
    const calls: string[] = [];
    let failWith: Error | undefined;
    const module = {
      async openPromisified(bus: number) {
        calls.push(`open ${bus}`);
        return {
          async i2cRead(address: number, length: number, buffer: Buffer) {
            if (failWith !== undefined) throw failWith;
            calls.push(`read ${address} ${length}`);
            buffer.fill(0x42);
            return { bytesRead: length, buffer };
          },
          async i2cWrite(address: number, length: number, buffer: Buffer) {
            calls.push(`write ${address} ${buffer.subarray(0, length).toString("hex")}`);
            return { bytesWritten: length, buffer };
          },
          async readI2cBlock(address: number, command: number, length: number, buffer: Buffer) {
            calls.push(`readBlock ${address} ${command} ${length}`);
            return { bytesRead: length, buffer };
          },
          async writeI2cBlock(address: number, command: number, length: number, buffer: Buffer) {
            calls.push(`writeBlock ${address} ${command} ${buffer.subarray(0, length).toString("hex")}`);
            return { bytesWritten: length, buffer };
          },
          async close() {
            calls.push("close");
          },
        };
      },
    };
    const bus = new I2cDevBus([1], module);
    assert.deepEqual([...(await bus.read(1, 0x48, 2))], [0x42, 0x42]);
    assert.equal(await bus.writeRegister(1, 0x48, 0x01, Uint8Array.of(0x60, 0xa0)), 2);
    assert.deepEqual(calls, ["open 1", "read 72 2", "close", "open 1", "writeBlock 72 1 60a0", "close"]);
    await rejectsWith(() => bus.read(1, 0x7f, 1), "INVALID_ARGUMENT");
    assert.equal(calls.length, 6, "validation runs before the bus is opened");
    failWith = errno("EBUSY", "EBUSY, Device or resource busy");
    await rejectsWith(() => bus.read(1, 0x48, 1), "FAILED_PRECONDITION", /\/dev\/i2c-1 is busy/);
    failWith = errno("EREMOTEIO", "EREMOTEIO, Remote I/O error");
    await rejectsWith(() => bus.read(1, 0x48, 1), "UNAVAILABLE", /no answer/);
    assert.equal(calls.filter((c) => c === "close").length, 4, "closed after failures too");
  });

  it("spidev: a transfer with the mode and speed asked for; EBUSY is FAILED_PRECONDITION", async () => {
    const opened: string[] = [];
    let busy = false;
    const module: SpiDeviceModule = {
      open(bus, device, options, callback) {
        opened.push(`${bus}.${device} mode ${options.mode} ${options.maxSpeedHz} Hz`);
        setImmediate(() => callback(busy ? errno("EBUSY", "EBUSY, Device or resource busy") : null));
        return {
          transfer(message, done) {
            const [transfer] = message;
            transfer?.sendBuffer?.copy(transfer.receiveBuffer ?? Buffer.alloc(0));
            setImmediate(() => done(null));
          },
          close(done) {
            opened.push("close");
            setImmediate(() => done(null));
          },
        };
      },
    };
    const spi = new SpidevSpi(["0.0"], module);
    const answer = await spi.transfer({
      bus: 0,
      chipSelect: 0,
      data: Uint8Array.of(9, 8),
      speedHz: 0,
      mode: 2,
    });
    assert.deepEqual([...answer], [9, 8]);
    assert.deepEqual(opened, ["0.0 mode 2 1000000 Hz", "close"]);
    busy = true;
    await rejectsWith(
      () => spi.transfer({ bus: 0, chipSelect: 0, data: Uint8Array.of(1), speedHz: 0, mode: 0 }),
      "FAILED_PRECONDITION",
    );
  });

  it("selection: the real driver where the device exists, simulated otherwise, and 'real' refuses to simulate", async () => {
    const dev = path.join(root, "dev");
    const sys = path.join(root, "sys2");
    await mkdir(dev, { recursive: true });
    await mkdir(path.join(sys, "class", "pwm", "pwmchip0"), { recursive: true });
    await writeFile(path.join(dev, "i2c-1"), "");
    await writeFile(path.join(dev, "spidev0.0"), "");
    const gpio = await SimulatedGpio.open();
    const selection = { backend: gpio, kind: "simulated" as const, reason: "test" };
    const hardware = await createHardware({
      gpio: selection,
      devDir: dev,
      sysDir: sys,
      loadI2c: () => ({ openPromisified: async () => Promise.reject(new Error("unused")) }),
      loadSpi: () => ({}) as SpiDeviceModule,
    });
    assert.deepEqual(
      hardware.choices.map((c) => [c.kind, c.backend, c.simulated]),
      [
        ["gpio", "simulated", true],
        ["i2c", "i2c-dev", false],
        ["spi", "spidev", false],
        ["pwm", "sysfs-pwm", false],
        ["analog", "simulated", true],
      ],
    );
    assert.deepEqual(hardware.i2c.buses, [1]);
    const broken = await createHardware({
      gpio: selection,
      devDir: dev,
      sysDir: sys,
      loadI2c: () => {
        throw new Error("Cannot find module 'bindings'");
      },
      loadSpi: () => ({}) as SpiDeviceModule,
    });
    const i2c = broken.choices.find((c) => c.kind === "i2c");
    assert.equal(i2c?.backend, "simulated");
    assert.match(i2c?.reason ?? "", /i2c-bus module failed to load: Cannot find module/);
    await rejectsWith(
      () =>
        createHardware({
          gpio: selection,
          devDir: path.join(root, "none"),
          sysDir: sys,
          prefer: { i2c: "real" },
        }),
      "FAILED_PRECONDITION",
      /I²C: no I²C bus/,
    );
    await hardware.close();
  });

  it("the npm bindings load on this machine (the real drivers' modules are present)", async () => {
    const { createRequire } = await import("node:module");
    const require = createRequire(import.meta.url);
    const i2c = require("i2c-bus") as { openPromisified?: unknown };
    const spi = require("spi-device") as { open?: unknown };
    assert.equal(typeof i2c.openPromisified, "function");
    assert.equal(typeof spi.open, "function");
    // No /dev/i2c-0 here: the real binding fails with the kernel's ENOENT, which the driver maps.
    const bus = new I2cDevBus([0]);
    await rejectsWith(() => bus.read(0, 0x48, 1), "UNAVAILABLE", /\/dev\/i2c-0: no such device/);
  });
});
