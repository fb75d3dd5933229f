import assert from "node:assert/strict";
import { existsSync } from "node:fs";
import { mkdir, mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { after, afterEach, before, describe, it } from "node:test";
import { GpiochipGpio } from "../../../src/agent/hardware/gpio/gpiochip-gpio.ts";
import { createGpioBackend, listGpiochips } from "../../../src/agent/hardware/gpio/select-backend.ts";
import { CorralError } from "../../../src/base/errors.ts";
import { type FakeGpiodTools, isAlive, writeFakeGpiodTools } from "./fake-gpiod-tools.ts";

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

/**
 * The kernel driver against stand-in libgpiod v1 tools (shell scripts in a temp dir): this machine has no
 * /dev/gpiochip* and cannot load gpio-sim or gpio-mockup, so the real tools have no chip to talk to.
 */
describe("GpiochipGpio (fake libgpiod v1 tools)", () => {
  let root: string;
  let tools: FakeGpiodTools;
  const opened: GpiochipGpio[] = [];
  const open = async () => {
    const gpio = await GpiochipGpio.open({ toolDir: tools.toolDir, timeoutMs: 5_000 });
    opened.push(gpio);
    return gpio;
  };

  before(async () => {
    root = await mkdtemp(path.join(os.tmpdir(), "corral-gpiochip-"));
  });
  afterEach(async () => {
    await Promise.all(opened.splice(0).map((gpio) => gpio.close()));
    // Nothing of the tools may outlive a test.
    for (const pid of await tools.holderPids()) assert.equal(isAlive(pid), false, `gpioset ${pid} leaked`);
    await rm(path.join(root, "case"), { recursive: true, force: true });
  });
  after(async () => {
    await rm(root, { recursive: true, force: true });
  });

  const fresh = async () => {
    tools = await writeFakeGpiodTools(path.join(root, "case"));
  };

  it("opens with the chips gpiodetect lists and the tools' generation", async () => {
    await fresh();
    const gpio = await open();
    assert.equal(gpio.kind, "gpiochip");
    assert.equal(gpio.major, 1);
    assert.deepEqual(gpio.chips, ["gpiochip0", "gpiochip1"]);
    assert.equal(gpio.lines(), 54);
    assert.equal(gpio.lines("gpiochip1"), 8);
    assert.match(await gpio.probe(), /gpiochip0 \[pinctrl-bcm2711\] 54 lines/);
  });

  it("write holds the line with gpioset --mode=signal; read answers the held level; close releases it", async () => {
    await fresh();
    const gpio = await open();
    assert.equal(await gpio.write(18, 1), 1);
    const [holder] = await tools.holderPids();
    assert.ok(holder !== undefined && isAlive(holder), "a gpioset holds the line");
    assert.ok((await tools.log()).includes("gpioset --mode=signal gpiochip0 18=1"));
    assert.equal(await gpio.read(18), 1);
    assert.ok(!(await tools.log()).some((call) => call.startsWith("gpioget")), "no gpioget on a held line");

    // A new level replaces the holder.
    assert.equal(await gpio.write(18, 0), 0);
    const [next] = await tools.holderPids();
    assert.ok(next !== undefined && next !== holder && isAlive(next));
    assert.equal(isAlive(holder), false, "the previous gpioset was stopped");
    assert.equal(await gpio.read(18), 0);

    await gpio.close();
    assert.deepEqual(await tools.holderPids(), [], "close released every line");
    assert.equal(isAlive(next), false);
    await rejectsWith(() => gpio.read(18), "UNAVAILABLE", /closed/);
  });

  it("read of a line nobody holds runs gpioget", async () => {
    await fresh();
    await writeFile(path.join(tools.stateDir, "gpiochip1.3.value"), "1\n");
    const gpio = await open();
    assert.equal(await gpio.read(3, "gpiochip1"), 1);
    assert.equal(await gpio.read(2, "gpiochip1"), 0);
    assert.ok((await tools.log()).includes("gpioget gpiochip1 3"));
  });

  it("a line another consumer holds is FAILED_PRECONDITION naming the consumer (from gpioinfo)", async () => {
    await fresh();
    await tools.holdByOther("gpiochip0", 4, "w1-gpio");
    const gpio = await open();
    const error = await rejectsWith(() => gpio.write(4, 1), "FAILED_PRECONDITION", /in use by "w1-gpio"/);
    assert.equal(error.details.consumer, "w1-gpio");
    await rejectsWith(() => gpio.read(4), "FAILED_PRECONDITION", /"w1-gpio"/);
    await rejectsWith(() => gpio.pulse(4, 1, 10), "FAILED_PRECONDITION", /"w1-gpio"/);
  });

  it("validates pins, chips, levels and pulse lengths before running anything", async () => {
    await fresh();
    const gpio = await open();
    const before = (await tools.log()).length;
    await rejectsWith(() => gpio.write(54, 1), "INVALID_ARGUMENT", /0\.\.53/);
    await rejectsWith(() => gpio.write(8, 1, "gpiochip1"), "INVALID_ARGUMENT", /0\.\.7/);
    await rejectsWith(() => gpio.read(0, "gpiochip5"), "INVALID_ARGUMENT", /gpiochip0, gpiochip1/);
    await rejectsWith(() => gpio.write(1, 2 as 1), "INVALID_ARGUMENT", /state: 2/);
    await rejectsWith(() => gpio.pulse(1, 1, 0), "INVALID_ARGUMENT", /pulse_ms/);
    assert.equal((await tools.log()).length, before, "no tool ran");
  });

  it("pulse runs gpioset --mode=time for the length, then holds the opposite level", async () => {
    await fresh();
    const gpio = await open();
    await gpio.write(18, 0);
    const started = Date.now();
    assert.equal(await gpio.pulse(18, 1, 150), 0);
    assert.ok(Date.now() - started >= 140, "the pulse lasted its length");
    const calls = (await tools.log()).filter((call) => call.startsWith("gpioset"));
    assert.deepEqual(calls.slice(-2), [
      "gpioset --mode=time --sec=0 --usec=150000 gpiochip0 18=1",
      "gpioset --mode=signal gpiochip0 18=0",
    ]);
    assert.equal(await gpio.read(18), 0);
    assert.equal((await tools.holderPids()).length, 1);
  });

  it("an aborted pulse is cut short, still ends at the opposite level, and fails CANCELLED", async () => {
    await fresh();
    const gpio = await open();
    const controller = new AbortController();
    const started = Date.now();
    const pulsing = gpio.pulse(7, 1, 30_000, undefined, controller.signal);
    setTimeout(() => controller.abort(), 200);
    await rejectsWith(() => pulsing, "CANCELLED");
    assert.ok(Date.now() - started < 5_000, "did not wait the pulse out");
    assert.equal(await gpio.read(7), 0);
    assert.ok((await tools.log()).includes("gpioset --mode=signal gpiochip0 7=0"));
  });

  it("probe fails when a holder died behind the backend's back", async () => {
    await fresh();
    const gpio = await open();
    await gpio.write(9, 1);
    const [pid] = await tools.holderPids();
    assert.ok(pid !== undefined);
    process.kill(pid, "SIGTERM");
    for (let waited = 0; isAlive(pid) && waited < 3_000; waited += 20)
      await new Promise((r) => setTimeout(r, 20));
    await assert.rejects(gpio.probe(), /gpioset holding gpiochip0 line 9 exited/);
    // A read after that goes to the hardware again.
    assert.equal(await gpio.read(9), 1);
  });

  it("a gpioset that never takes its line: UNAVAILABLE after the confirm timeout, and it is stopped", async () => {
    await fresh();
    // Replace gpioset by one that answers --version but then only sleeps, never requesting the line.
    const pidFile = path.join(tools.stateDir, "stuck.pid");
    await writeFile(
      path.join(tools.toolDir, "gpioset"),
      `#!/bin/sh\n[ "$1" = --version ] && { echo "gpioset (libgpiod) v1.6.3"; exit 0; }\necho $$ > '${pidFile}'\nexec sleep 3600\n`,
    );
    const gpio = await GpiochipGpio.open({ toolDir: tools.toolDir, holdConfirmTimeoutMs: 300 });
    opened.push(gpio);
    const started = Date.now();
    await rejectsWith(() => gpio.write(18, 1), "UNAVAILABLE", /did not take gpiochip0 line 18 within 300 ms/);
    assert.ok(Date.now() - started < 5_000);
    const pid = Number((await readFile(pidFile, "utf8")).trim());
    assert.equal(isAlive(pid), false, "the stuck gpioset was stopped");
  });

  it("missing tools: FAILED_PRECONDITION telling to install gpiod", async () => {
    await fresh();
    await rejectsWith(
      () => GpiochipGpio.open({ toolDir: path.join(root, "nowhere") }),
      "FAILED_PRECONDITION",
      /install the libgpiod tools/,
    );
  });
});

describe("createGpioBackend", () => {
  let root: string;
  let tools: FakeGpiodTools;
  before(async () => {
    root = await mkdtemp(path.join(os.tmpdir(), "corral-gpiosel-"));
    tools = await writeFakeGpiodTools(path.join(root, "tools"));
    await mkdir(path.join(root, "dev-with-chip"));
    await writeFile(path.join(root, "dev-with-chip", "gpiochip0"), "");
    await writeFile(path.join(root, "dev-with-chip", "gpiochip10"), "");
    await writeFile(path.join(root, "dev-with-chip", "gpiochip2"), "");
    await mkdir(path.join(root, "dev-empty"));
    await writeFile(path.join(root, "dev-empty", "ttyS0"), "");
  });
  after(async () => {
    await rm(root, { recursive: true, force: true });
  });

  it("lists gpiochipN devices in number order", async () => {
    assert.deepEqual(await listGpiochips(path.join(root, "dev-with-chip")), [
      "gpiochip0",
      "gpiochip2",
      "gpiochip10",
    ]);
    assert.deepEqual(await listGpiochips(path.join(root, "dev-empty")), []);
    assert.deepEqual(await listGpiochips(path.join(root, "no-such-dir")), []);
  });

  it("auto without a gpiochip: the simulated bank, with the reason, its state in the data dir", async () => {
    const dataDir = path.join(root, "data1");
    const selection = await createGpioBackend({ dataDir, devDir: path.join(root, "dev-empty") });
    try {
      assert.equal(selection.kind, "simulated");
      assert.equal(selection.backend.kind, "simulated");
      assert.match(selection.reason, /no GPIO character device/);
      assert.equal(selection.backend.lines(), 54);
      await selection.backend.write(18, 1);
      assert.ok(existsSync(path.join(dataDir, "gpio-sim.json")));
    } finally {
      await selection.backend.close();
    }
  });

  it("auto with a gpiochip and working tools: the kernel driver", async () => {
    const selection = await createGpioBackend({
      dataDir: path.join(root, "data2"),
      devDir: path.join(root, "dev-with-chip"),
      toolDir: tools.toolDir,
    });
    try {
      assert.equal(selection.kind, "gpiochip");
      assert.match(
        selection.reason,
        /kernel GPIO character device: gpiochip0, gpiochip1 \(libgpiod tools v1\)/,
      );
      assert.equal(await selection.backend.write(18, 1), 1);
    } finally {
      await selection.backend.close();
    }
  });

  it("auto with a gpiochip but broken tools: simulated, saying why; prefer gpiochip fails instead", async () => {
    const warnings: string[] = [];
    const selection = await createGpioBackend({
      dataDir: path.join(root, "data3"),
      devDir: path.join(root, "dev-with-chip"),
      toolDir: path.join(root, "no-tools"),
      onWarning: (message) => warnings.push(message),
    });
    await selection.backend.close();
    assert.equal(selection.kind, "simulated");
    assert.match(selection.reason, /libgpiod tools failed: .*not found/);
    assert.equal(warnings.length, 1);

    await rejectsWith(
      () =>
        createGpioBackend({
          dataDir: path.join(root, "data3"),
          devDir: path.join(root, "dev-with-chip"),
          toolDir: path.join(root, "no-tools"),
          prefer: "gpiochip",
        }),
      "FAILED_PRECONDITION",
      /gpiochip0.*present but/,
    );
    await rejectsWith(
      () =>
        createGpioBackend({
          dataDir: path.join(root, "data3"),
          devDir: path.join(root, "dev-empty"),
          prefer: "gpiochip",
        }),
      "FAILED_PRECONDITION",
      /no GPIO character device/,
    );
  });

  it("prefer simulated: simulated even with a working chip", async () => {
    const selection = await createGpioBackend({
      dataDir: path.join(root, "data4"),
      devDir: path.join(root, "dev-with-chip"),
      toolDir: tools.toolDir,
      prefer: "simulated",
    });
    await selection.backend.close();
    assert.equal(selection.kind, "simulated");
    assert.match(selection.reason, /by configuration/);
  });

  it("the real Debian gpiod tools on this machine: version v1 read, no chip → refused", {
    skip: !existsSync("/usr/bin/gpioset") || existsSync("/dev/gpiochip0"),
  }, async () => {
    await rejectsWith(
      () => GpiochipGpio.open({ toolDir: "/usr/bin" }),
      "FAILED_PRECONDITION",
      /no GPIO chip/,
    );
  });
});
