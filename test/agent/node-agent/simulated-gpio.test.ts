import assert from "node:assert/strict";
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { after, before, describe, it } from "node:test";
import {
  abortableDelay,
  checkLevel,
  checkPin,
  checkPulseMs,
  LineLocks,
  resolveChip,
} from "../../../src/agent/hardware/gpio/gpio-backend.ts";
import { parseStateFile, SimulatedGpio } from "../../../src/agent/hardware/gpio/simulated-gpio.ts";
import { CorralError } from "../../../src/base/errors.ts";

/** Asserts that `action` fails with a CorralError of `code` whose message matches `message`. */
async function rejectsWith(
  action: () => Promise<unknown>,
  code: string,
  message?: RegExp,
): Promise<CorralError> {
  let caught: unknown;
  try {
    await action();
  } catch (error) {
    caught = error;
  }
  assert.ok(caught instanceof CorralError, `expected a CorralError ${code}, got ${String(caught)}`);
  assert.equal(caught.code, code, caught.message);
  if (message !== undefined) assert.match(caught.message, message);
  return caught;
}

describe("GPIO validation", () => {
  it("pins are integers 0..lines-1; the message names the pin and the range", async () => {
    assert.equal(checkPin(0, 54, "gpiochip0"), 0);
    assert.equal(checkPin(53, 54, "gpiochip0"), 53);
    for (const bad of [54, -1, 1.5, Number.NaN]) {
      await rejectsWith(async () => checkPin(bad, 54, "gpiochip0"), "INVALID_ARGUMENT", /0\.\.53/);
    }
    await rejectsWith(async () => checkPin(99, 54, "gpiochip0"), "INVALID_ARGUMENT", /pin: 99 .*gpiochip0/);
  });

  it("levels are 0 or 1; pulses last 1..60000 ms", async () => {
    assert.equal(checkLevel(1), 1);
    await rejectsWith(async () => checkLevel(7), "INVALID_ARGUMENT", /state: 7/);
    assert.equal(checkPulseMs(1), 1);
    assert.equal(checkPulseMs(60_000), 60_000);
    for (const bad of [0, 60_001, 2.5])
      await rejectsWith(async () => checkPulseMs(bad), "INVALID_ARGUMENT", /pulse_ms/);
  });

  it("an empty chip is the default one; an unknown chip is refused naming the chips", async () => {
    assert.equal(resolveChip(["gpiochip0", "gpiochip1"], ""), "gpiochip0");
    assert.equal(resolveChip(["gpiochip0", "gpiochip1"], undefined), "gpiochip0");
    assert.equal(resolveChip(["gpiochip0", "gpiochip1"], "gpiochip1"), "gpiochip1");
    await rejectsWith(
      async () => resolveChip(["gpiochip0", "gpiochip1"], "gpiochip9"),
      "INVALID_ARGUMENT",
      /gpiochip9.*gpiochip0, gpiochip1/,
    );
  });

  it("LineLocks runs one task per key at a time, keys independently", async () => {
    const locks = new LineLocks();
    const order: string[] = [];
    const slow = locks.run("a", async () => {
      order.push("a1 start");
      await abortableDelay(30, undefined);
      order.push("a1 end");
    });
    const second = locks.run("a", async () => {
      order.push("a2");
    });
    const other = locks.run("b", async () => {
      order.push("b");
    });
    await Promise.all([slow, second, other]);
    assert.deepEqual(order, ["a1 start", "b", "a1 end", "a2"]);
    // A failing task releases the lock.
    await assert.rejects(
      locks.run("a", async () => Promise.reject(new Error("boom"))),
      /boom/,
    );
    assert.equal(await locks.run("a", async () => 42), 42);
  });

  it("abortableDelay answers false when aborted, true when the time passed", async () => {
    assert.equal(await abortableDelay(5, undefined), true);
    const controller = new AbortController();
    const started = Date.now();
    const waiting = abortableDelay(10_000, controller.signal);
    controller.abort();
    assert.equal(await waiting, false);
    assert.ok(Date.now() - started < 1_000);
  });
});

describe("SimulatedGpio", () => {
  let dir: string;
  before(async () => {
    dir = await mkdtemp(path.join(os.tmpdir(), "corral-simgpio-"));
  });
  after(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it("has 54 lines on gpiochip0 by default; lines read 0 until driven; writes read back", async () => {
    const gpio = await SimulatedGpio.open();
    assert.equal(gpio.kind, "simulated");
    assert.deepEqual(gpio.chips, ["gpiochip0"]);
    assert.equal(gpio.lines(), 54);
    assert.equal(await gpio.read(18), 0);
    assert.equal(await gpio.write(18, 1), 1);
    assert.equal(await gpio.read(18), 1);
    assert.equal(await gpio.read(17), 0, "other lines untouched");
    assert.equal(await gpio.write(18, 0), 0);
    assert.equal(await gpio.read(18), 0);
    await gpio.close();
  });

  it("refuses bad pins, levels, pulse lengths and chips", async () => {
    const gpio = await SimulatedGpio.open({ chips: ["gpiochip0", "gpiochip1"], lines: 8 });
    await rejectsWith(() => gpio.write(8, 1), "INVALID_ARGUMENT", /0\.\.7/);
    await rejectsWith(() => gpio.read(-1), "INVALID_ARGUMENT", /pin: -1/);
    await rejectsWith(() => gpio.write(1, 7 as 0), "INVALID_ARGUMENT", /state: 7/);
    await rejectsWith(() => gpio.pulse(1, 1, 0), "INVALID_ARGUMENT", /pulse_ms/);
    await rejectsWith(() => gpio.pulse(1, 1, 60_001), "INVALID_ARGUMENT", /pulse_ms/);
    await rejectsWith(() => gpio.read(1, "gpiochip7"), "INVALID_ARGUMENT", /gpiochip0, gpiochip1/);
    assert.equal(await gpio.write(3, 1, "gpiochip1"), 1);
    assert.equal(await gpio.read(3, "gpiochip0"), 0, "chips are separate banks");
    await gpio.close();
  });

  it("a line held by another process is FAILED_PRECONDITION naming the consumer, until released", async () => {
    const gpio = await SimulatedGpio.open();
    gpio.hold(4, "w1-gpio");
    const error = await rejectsWith(() => gpio.write(4, 1), "FAILED_PRECONDITION", /"w1-gpio"/);
    assert.equal(error.details.consumer, "w1-gpio");
    await rejectsWith(() => gpio.read(4), "FAILED_PRECONDITION");
    await rejectsWith(() => gpio.pulse(4, 1, 5), "FAILED_PRECONDITION");
    gpio.release(4);
    assert.equal(await gpio.write(4, 1), 1);
    await gpio.close();
  });

  it("a pulse drives the level for its length, then the opposite, and answers the final level", async () => {
    const gpio = await SimulatedGpio.open();
    const started = Date.now();
    const pulsing = gpio.pulse(5, 1, 80);
    await abortableDelay(20, undefined);
    // A read waits for the pulse (one operation per line at a time)...
    const during = gpio.read(5);
    assert.equal(await pulsing, 0);
    assert.ok(Date.now() - started >= 75, "the pulse lasted its length");
    assert.equal(await during, 0, "...and sees the level after it");
    // An active-low pulse ends HIGH.
    assert.equal(await gpio.pulse(5, 0, 5), 1);
    assert.equal(await gpio.read(5), 1);
    await gpio.close();
  });

  it("an aborted pulse ends early at the opposite level and fails CANCELLED", async () => {
    const gpio = await SimulatedGpio.open();
    const controller = new AbortController();
    const started = Date.now();
    const pulsing = gpio.pulse(6, 1, 30_000, undefined, controller.signal);
    setTimeout(() => controller.abort(), 30);
    await rejectsWith(() => pulsing, "CANCELLED");
    assert.ok(Date.now() - started < 2_000, "did not wait the pulse out");
    assert.equal(await gpio.read(6), 0);
    await gpio.close();
  });

  it("keeps levels across a restart in its state file", async () => {
    const statePath = path.join(dir, "agent", "gpio-sim.json");
    const first = await SimulatedGpio.open({ statePath });
    await first.write(18, 1);
    await first.write(23, 1);
    await first.write(23, 0);
    await first.close();
    const saved = parseStateFile(await readFile(statePath, "utf8"));
    assert.deepEqual(saved?.chips.gpiochip0, { "18": 1, "23": 0 });

    const second = await SimulatedGpio.open({ statePath });
    assert.equal(await second.read(18), 1);
    assert.equal(await second.read(23), 0);
    assert.match(await second.probe(), /gpio-sim\.json/);
    await second.close();
  });

  it("a corrupt state file is reported and ignored; out-of-range pins in it are dropped", async () => {
    const statePath = path.join(dir, "corrupt.json");
    await writeFile(statePath, "{not json");
    const warnings: string[] = [];
    const gpio = await SimulatedGpio.open({ statePath, onWarning: (message) => warnings.push(message) });
    assert.equal(await gpio.read(0), 0);
    assert.equal(warnings.length, 1);
    await gpio.close();

    await writeFile(
      statePath,
      JSON.stringify({ version: 1, chips: { gpiochip0: { "3": 1, "99": 1, "4": 7 } } }),
    );
    const again = await SimulatedGpio.open({ statePath, lines: 8 });
    assert.equal(await again.read(3), 1);
    assert.equal(await again.read(4), 0, "a level other than 0/1 is dropped");
    await again.close();
    assert.equal(parseStateFile('{"version":2,"chips":{}}'), undefined);
  });

  it("probe fails while the state file cannot be written (health shows it)", async () => {
    const blocker = path.join(dir, "not-a-dir");
    await writeFile(blocker, "x");
    const warnings: string[] = [];
    const gpio = await SimulatedGpio.open({
      statePath: path.join(blocker, "gpio-sim.json"),
      onWarning: (message) => warnings.push(message),
    });
    assert.equal(await gpio.write(1, 1), 1, "the level is still driven in memory");
    await assert.rejects(gpio.probe(), /cannot save pin states/);
    assert.ok(warnings.some((message) => message.includes("cannot save")));
    await gpio.close();
  });
});
