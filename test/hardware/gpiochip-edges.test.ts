import assert from "node:assert/strict";
import { appendFile, mkdtemp, rm } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { after, before, describe, it } from "node:test";
import type { PinChange } from "../../src/agent/hardware/gpio/gpio-backend.ts";
import { GpiochipGpio } from "../../src/agent/hardware/gpio/gpiochip-gpio.ts";
import { gpiodArgv, lineFlags, parseGpiomonLine } from "../../src/agent/hardware/gpio/gpiod-tools.ts";
import { CorralError } from "../../src/base/errors.ts";
import { type FakeGpiodTools, writeFakeGpiodTools } from "../agent/node-agent/fake-gpiod-tools.ts";
import { eventually } from "../helpers/agent.ts";

const input = { direction: "input", pull: "up", activeLow: true, debounceMs: 0, edge: "both" } as const;

describe("gpiod tools: configuration flags and gpiomon (pure)", () => {
  it("carries bias, active-low, edges and debounce for each generation", () => {
    assert.deepEqual(lineFlags(1, input, "get"), ["--active-low", "--bias=pull-up"]);
    assert.deepEqual(lineFlags(2, input, "get"), ["-l", "--bias=pull-up"]);
    assert.deepEqual(lineFlags(1, { ...input, edge: "rising" }, "mon"), [
      "--active-low",
      "--bias=pull-up",
      "--rising-edge",
    ]);
    assert.deepEqual(lineFlags(2, { ...input, edge: "falling", debounceMs: 10 }, "mon"), [
      "-l",
      "--bias=pull-up",
      "--edges=falling",
      "--debounce-period=10ms",
    ]);
    assert.deepEqual(lineFlags(1, { ...input, direction: "output", activeLow: false }, "set"), []);
    assert.deepEqual(lineFlags(1, undefined, "get"), [], "a line never configured is requested as it is");
    assert.deepEqual(gpiodArgv.monitor(1, "gpiochip0", 23, ["--bias=pull-up"]), [
      "--line-buffered",
      "--format=%o %e %s.%n",
      "--bias=pull-up",
      "gpiochip0",
      "23",
    ]);
    assert.deepEqual(gpiodArgv.monitor(2, "gpiochip0", 23), ["-c", "gpiochip0", "--format=%o %e %S", "23"]);
  });

  it("parses gpiomon lines: v1 0/1, v2 1/2; real-time stamps kept, monotonic ones left to the caller", () => {
    assert.deepEqual(parseGpiomonLine(1, "23 1 1700000000.500000000"), {
      pin: 23,
      rising: true,
      at: 1700000000500,
    });
    assert.deepEqual(parseGpiomonLine(1, "23 0 1234.000000001"), { pin: 23, rising: false, at: undefined });
    assert.deepEqual(parseGpiomonLine(2, "4 2 99.5"), { pin: 4, rising: false, at: undefined });
    assert.equal(parseGpiomonLine(2, "4 0 99.5"), undefined, "v2 has no type 0");
    assert.equal(parseGpiomonLine(1, "event: RISING EDGE offset: 4"), undefined);
  });
});

/**
 * The kernel GPIO driver's configuration and edge events against stand-in libgpiod v1 tools (this machine
 * has no /dev/gpiochip* and cannot load gpio-sim or gpio-mockup): gpiomon is a script printing the events
 * the test appends to a file, so the driver's process handling and parsing are what is tested.
 */
describe("GpiochipGpio: configure, status and watch (fake libgpiod v1 tools)", () => {
  let root: string;
  let tools: FakeGpiodTools;
  let gpio: GpiochipGpio;
  before(async () => {
    root = await mkdtemp(path.join(os.tmpdir(), "corral-gpio-edges-"));
    tools = await writeFakeGpiodTools(root);
    gpio = await GpiochipGpio.open({ toolDir: tools.toolDir, timeoutMs: 5_000 });
  });
  after(async () => {
    await gpio.close();
    await rm(root, { recursive: true, force: true });
  });

  it("an input's pull and active-low go to every gpioget of the line", async () => {
    const status = await gpio.configure(5, input);
    assert.equal(status.settings.pull, "up");
    assert.equal(status.settings.direction, "input");
    await gpio.read(5);
    const gets = (await tools.log()).filter((line) => line.startsWith("gpioget"));
    assert.ok(
      gets.every((line) => line === "gpioget --active-low --bias=pull-up gpiochip0 5"),
      gets.join("\n"),
    );
  });

  it("an output is held at its initial level by a gpioset with its flags", async () => {
    const status = await gpio.configure(6, { ...input, direction: "output", activeLow: true }, undefined, 1);
    assert.equal(status.level, 1);
    assert.equal(status.settings.direction, "output");
    const sets = (await tools.log()).filter((line) => line.startsWith("gpioset") && line.includes(" 6="));
    assert.deepEqual(sets, ["gpioset --mode=signal --active-low gpiochip0 6=1"]);
  });

  it("watch: an input's edges come from gpiomon; writes of held lines are reported by the driver", async () => {
    await gpio.configure(23, { ...input, activeLow: false, pull: "down" });
    const changes: PinChange[] = [];
    const errors: Error[] = [];
    const watch = gpio.watch({
      chip: "gpiochip0",
      pins: [23, 24],
      onChange: (change) => changes.push(change),
      onError: (error) => errors.push(error),
    });
    const monitorFile = path.join(tools.stateDir, "mon.gpiochip0.23");
    await eventually(async () =>
      (await tools.log()).filter((line) => line.startsWith("gpiomon")).length === 2 ? true : undefined,
    );
    const monitors = (await tools.log()).filter((line) => line.startsWith("gpiomon")).sort();
    assert.deepEqual(monitors, [
      "gpiomon --line-buffered --format=%o %e %s.%n --bias=pull-down gpiochip0 23",
      "gpiomon --line-buffered --format=%o %e %s.%n gpiochip0 24",
    ]);
    await appendFile(monitorFile, "23 1 1700000000.000000001\n23 0 1700000000.250000000\n");
    // gpiomon holds line 24 (as the kernel's line request would): the write stops it first.
    await gpio.write(24, 1);
    await eventually(async () => (changes.length >= 3 ? true : undefined));
    assert.deepEqual(
      changes.filter((c) => c.pin === 23).map((c) => [c.level, c.at]),
      [
        [1, 1700000000000],
        [0, 1700000000250],
      ],
    );
    assert.deepEqual(
      changes.filter((c) => c.pin === 24).map((c) => c.level),
      [1],
    );
    const status23 = await gpio.status(23);
    assert.equal(status23.level, 0, "a watched line reads its last edge's level");
    assert.equal(status23.consumer, undefined, "our own gpiomon is not another consumer");
    watch.close();
    assert.deepEqual(errors, [], "stopping gpiomon for a write, or closing, is not an error");
  });

  it("v1 cannot debounce: the driver drops edges closer than the period", async () => {
    await gpio.configure(25, { ...input, activeLow: false, debounceMs: 100 });
    const changes: PinChange[] = [];
    const watch = gpio.watch({
      chip: "gpiochip0",
      pins: [25],
      onChange: (c) => changes.push(c),
      onError: () => {},
    });
    await eventually(async () =>
      (await tools.log()).some((line) => line.startsWith("gpiomon") && line.endsWith("gpiochip0 25"))
        ? true
        : undefined,
    );
    await appendFile(
      path.join(tools.stateDir, "mon.gpiochip0.25"),
      "25 0 1700000001.000000000\n25 1 1700000001.020000000\n25 0 1700000001.500000000\n",
    );
    await eventually(async () => (changes.length >= 2 ? true : undefined));
    watch.close();
    assert.deepEqual(
      changes.map((c) => [c.level, c.at]),
      [
        [0, 1700000001000],
        [0, 1700000001500],
      ],
    );
  });

  it("a line another process holds: gpiomon's EBUSY ends the watch with FAILED_PRECONDITION", async () => {
    await tools.holdByOther("gpiochip0", 30, "kernel-driver");
    const errors: Error[] = [];
    const watch = gpio.watch({
      chip: "gpiochip0",
      pins: [30],
      onChange: () => {},
      onError: (e) => errors.push(e),
    });
    await eventually(async () => (errors.length > 0 ? true : undefined));
    watch.close();
    assert.ok(errors[0] instanceof CorralError);
    assert.equal(errors[0].code, "FAILED_PRECONDITION");
    assert.match(errors[0].message, /busy/);
    const busy = await gpio.status(30);
    assert.equal(busy.consumer, "kernel-driver");
  });

  it("close stops every gpiomon", async () => {
    const watch = gpio.watch({ chip: "gpiochip0", pins: [40], onChange: () => {}, onError: () => {} });
    await eventually(async () =>
      (await tools.log()).some((line) => line.startsWith("gpiomon") && line.endsWith("gpiochip0 40"))
        ? true
        : undefined,
    );
    watch.close();
    const { execFileSync } = await import("node:child_process");
    await eventually(async () => {
      const ps = execFileSync("ps", ["-eo", "pid,args"], { encoding: "utf8" });
      return ps.includes("mon.gpiochip0.40") ? undefined : true;
    });
    const status = await gpio.status(40);
    assert.equal(status.consumer, undefined, "the line was let go");
  });
});
