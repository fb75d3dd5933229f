import assert from "node:assert/strict";
import { mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { after, before, describe, it } from "node:test";
import type { GpioBackend } from "../../../src/agent/hardware/gpio/gpio-backend.ts";
import { SimulatedGpio } from "../../../src/agent/hardware/gpio/simulated-gpio.ts";
import {
  controllerCheck,
  diskCheck,
  gpioCheck,
  memoryCheck,
  runHealthChecks,
  temperatureCheck,
  worst,
} from "../../../src/agent/services/node-agent/health-checks.ts";

const gib = 1024 ** 3;

describe("health rules", () => {
  it("worst of the levels; OK for none", () => {
    assert.equal(worst([]), "OK");
    assert.equal(worst(["OK", "OK"]), "OK");
    assert.equal(worst(["OK", "DEGRADED", "OK"]), "DEGRADED");
    assert.equal(worst(["DEGRADED", "UNHEALTHY", "OK"]), "UNHEALTHY");
  });

  it("controller: CONNECTED OK, DISCONNECTED and UNAUTHENTICATED DEGRADED", () => {
    assert.equal(controllerCheck("CONNECTED").status, "OK");
    assert.equal(controllerCheck("DISCONNECTED").status, "DEGRADED");
    assert.match(controllerCheck("DISCONNECTED").message, /not connected/);
    assert.equal(controllerCheck("UNAUTHENTICATED").status, "DEGRADED");
  });

  it("disk: below 5 % free DEGRADED, below 1 % UNHEALTHY (boundaries included in the better level)", () => {
    const at = (freePercent: number) =>
      diskCheck({ freeBytes: (freePercent / 100) * 100 * gib, totalBytes: 100 * gib, path: "/data" });
    assert.equal(at(50).status, "OK");
    assert.equal(at(5).status, "OK");
    assert.equal(at(4.9).status, "DEGRADED");
    assert.equal(at(1).status, "DEGRADED");
    assert.equal(at(0.9).status, "UNHEALTHY");
    assert.equal(at(0).status, "UNHEALTHY");
    assert.match(at(4.9).message, /4\.9 GiB of 100\.0 GiB free \(4\.9%\) on \/data; below 5%/);
    assert.equal(diskCheck({ freeBytes: 0, totalBytes: 0, path: "/x" }).status, "DEGRADED");
  });

  it("memory: from 90 % in use DEGRADED, from 98 % UNHEALTHY", () => {
    const at = (usedPercent: number) =>
      memoryCheck({ totalBytes: 100 * gib, availableBytes: ((100 - usedPercent) / 100) * 100 * gib });
    assert.equal(at(10).status, "OK");
    assert.equal(at(89.9).status, "OK");
    assert.equal(at(90).status, "DEGRADED");
    assert.equal(at(97.9).status, "DEGRADED");
    assert.equal(at(98).status, "UNHEALTHY");
    assert.match(at(95).message, /95\.0% in use/);
  });

  it("temperature: from 80 °C DEGRADED, from 90 °C UNHEALTHY; no sensor, no check", () => {
    assert.equal(temperatureCheck(undefined), undefined);
    assert.equal(temperatureCheck(45)?.status, "OK");
    assert.equal(temperatureCheck(79.9)?.status, "OK");
    assert.equal(temperatureCheck(80)?.status, "DEGRADED");
    assert.equal(temperatureCheck(90)?.status, "UNHEALTHY");
    assert.match(temperatureCheck(85.25)?.message ?? "", /85\.3 °C; at or above 80 °C/);
    const custom = {
      diskFreeDegradedPercent: 5,
      diskFreeUnhealthyPercent: 1,
      memoryDegradedPercent: 90,
      memoryUnhealthyPercent: 98,
      temperatureDegradedCelsius: 60,
      temperatureUnhealthyCelsius: 70,
    };
    assert.equal(temperatureCheck(65, custom)?.status, "DEGRADED", "thresholds are configurable");
  });

  it("gpio: the backend's probe; a failing probe is DEGRADED with its reason", async () => {
    const gpio = await SimulatedGpio.open();
    const ok = await gpioCheck(gpio, "no GPIO character device (/dev/gpiochip*)");
    assert.equal(ok.status, "OK");
    assert.match(ok.message, /^simulated: simulated bank: gpiochip0, 54 lines.*\(no GPIO character device/);
    await gpio.close();
    const broken: GpioBackend = {
      kind: "gpiochip",
      chips: ["gpiochip0"],
      lines: () => 54,
      write: async () => 0,
      read: async () => 0,
      pulse: async () => 0,
      configure: async () => {
        throw new Error("not used");
      },
      status: async () => {
        throw new Error("not used");
      },
      list: async () => [],
      watch: () => ({ close: () => {} }),
      probe: async () => {
        throw new Error("GPIO chip gone: gpiochip0");
      },
      close: async () => {},
    };
    const failing = await gpioCheck(broken);
    assert.equal(failing.status, "DEGRADED");
    assert.match(failing.message, /gpiochip backend failing: GPIO chip gone/);
  });
});

describe("runHealthChecks", () => {
  let root: string;
  let gpio: SimulatedGpio;
  before(async () => {
    root = await mkdtemp(path.join(os.tmpdir(), "corral-health-"));
    await mkdir(path.join(root, "proc"));
    gpio = await SimulatedGpio.open();
  });
  after(async () => {
    await gpio.close();
    await rm(root, { recursive: true, force: true });
  });

  const meminfo = (totalKb: number, availableKb: number) =>
    writeFile(
      path.join(root, "proc", "meminfo"),
      `MemTotal: ${totalKb} kB\nMemAvailable: ${availableKb} kB\n`,
    );

  it("all fine: OK, one result per check, no temperature check without a sensor", async () => {
    await meminfo(4_000_000, 3_000_000);
    const report = await runHealthChecks({
      gpio,
      controllerState: () => "CONNECTED",
      dataDir: path.join(root, "data"),
      procDir: path.join(root, "proc"),
      diskSpace: async () => ({ freeBytes: 50 * gib, totalBytes: 100 * gib }),
      temperature: async () => undefined,
    });
    assert.equal(report.status, "OK");
    assert.deepEqual(
      report.checks.map((check) => [check.name, check.status]),
      [
        ["controller", "OK"],
        ["disk", "OK"],
        ["memory", "OK"],
        ["gpio", "OK"],
      ],
    );
  });

  it("the overall status is the worst check", async () => {
    await meminfo(4_000_000, 3_000_000);
    const base = {
      gpio,
      dataDir: path.join(root, "data"),
      procDir: path.join(root, "proc"),
      diskSpace: async () => ({ freeBytes: 50 * gib, totalBytes: 100 * gib }),
    };
    const disconnected = await runHealthChecks({
      ...base,
      controllerState: () => "DISCONNECTED",
      temperature: async () => 50,
    });
    assert.equal(disconnected.status, "DEGRADED");
    assert.equal(disconnected.checks.find((check) => check.name === "temperature")?.status, "OK");

    const hot = await runHealthChecks({
      ...base,
      controllerState: () => "DISCONNECTED",
      temperature: async () => 91,
    });
    assert.equal(hot.status, "UNHEALTHY");

    await meminfo(4_000_000, 40_000);
    const squeezed = await runHealthChecks({
      ...base,
      controllerState: () => "CONNECTED",
      temperature: async () => 40,
    });
    assert.equal(squeezed.status, "UNHEALTHY");
    assert.equal(squeezed.checks.find((check) => check.name === "memory")?.status, "UNHEALTHY");
  });

  it("a check that throws counts as DEGRADED with its error; the others still run", async () => {
    await meminfo(4_000_000, 3_000_000);
    const report = await runHealthChecks({
      gpio,
      controllerState: () => "CONNECTED",
      dataDir: path.join(root, "data"),
      procDir: path.join(root, "proc"),
      diskSpace: async () => {
        throw new Error("EACCES: permission denied");
      },
      temperature: async () => undefined,
    });
    assert.equal(report.status, "DEGRADED");
    const disk = report.checks.find((check) => check.name === "disk");
    assert.equal(disk?.status, "DEGRADED");
    assert.match(disk?.message ?? "", /check failed: EACCES/);
    assert.equal(report.checks.length, 4);
  });

  it("by default measures the data dir's real file system (created when missing)", async () => {
    const dataDir = path.join(root, "fresh", "agent");
    const report = await runHealthChecks({
      gpio,
      controllerState: () => "CONNECTED",
      dataDir,
      temperature: async () => undefined,
    });
    const disk = report.checks.find((check) => check.name === "disk");
    assert.match(disk?.message ?? "", /GiB free .* on .*fresh\/agent/);
  });
});
