import assert from "node:assert/strict";
import { type ChildProcess, spawn } from "node:child_process";
import { after, before, describe, it } from "node:test";
import { eventually, joinWithToken, startTestAgent, type TestAgent } from "../helpers/agent.ts";
import { startTestController, type TestController } from "../helpers/controller.ts";
import { cleanCorralEnv, corralBin, runCorral } from "../helpers/corral-processes.ts";

// Every simulated backend through the whole path: the corral CLI (a child process) → the controller's
// loopback bridge → the node's agent over mTLS → the simulated backend, and back.

const corralRun = (args: string[]) => runCorral(args, { timeoutMs: 60_000 });

/** A long-running CLI command whose output lines are collected as they come. */
function corralStream(args: string[]): { child: ChildProcess; lines: string[]; done: Promise<number> } {
  const child = spawn(process.execPath, [corralBin, ...args], {
    env: cleanCorralEnv(),
    stdio: ["ignore", "pipe", "pipe"],
  });
  const lines: string[] = [];
  let partial = "";
  child.stdout?.setEncoding("utf8");
  child.stdout?.on("data", (chunk: string) => {
    const parts = (partial + chunk).split("\n");
    partial = parts.pop() ?? "";
    lines.push(...parts);
  });
  let stderr = "";
  child.stderr?.setEncoding("utf8");
  child.stderr?.on("data", (chunk: string) => {
    stderr += chunk;
  });
  const done = new Promise<number>((resolve) => {
    child.once("exit", (code) => {
      if (code !== 0 && stderr !== "") lines.push(`stderr: ${stderr}`);
      resolve(code ?? -1);
    });
  });
  const timer = setTimeout(() => child.kill("SIGKILL"), 60_000);
  timer.unref();
  void done.then(() => clearTimeout(timer));
  return { child, lines, done };
}

describe("hardware and devices through the CLI, the controller and an agent (simulated backends)", () => {
  let cluster: TestController;
  let node: TestAgent;
  let server: string[];
  const streams: ChildProcess[] = [];
  before(async () => {
    cluster = await startTestController();
    node = await startTestAgent({ name: "pi-cli-hw" });
    await joinWithToken(cluster, node);
    server = ["--server", `127.0.0.1:${cluster.bridgePort}`];
  });
  after(async () => {
    for (const child of streams) if (child.exitCode === null) child.kill("SIGKILL");
    await node.close();
    await cluster.close();
  });

  it("corral devices backends: every kind simulated, and HealthCheck says so", async () => {
    const out = await corralRun([...server, "-o", "json", "devices", "backends", "--node", "pi-cli-hw"]);
    assert.equal(out.code, 0, out.stderr);
    const backends = JSON.parse(out.stdout) as { kind: string; backend: string; simulated?: boolean }[];
    assert.deepEqual(
      backends.map((b) => [b.kind, b.backend, b.simulated === true]),
      [
        ["gpio", "simulated", true],
        ["i2c", "simulated", true],
        ["spi", "simulated", true],
        ["pwm", "software-pwm", true],
        ["analog", "simulated", true],
      ],
    );
    const health = await corralRun([...server, "-o", "json", "health", "--node", "pi-cli-hw"]);
    const checks = (JSON.parse(health.stdout) as { checks: { name: string; message: string }[] }).checks;
    const hardware = checks.find((check) => check.name === "hardware");
    assert.match(
      hardware?.message ?? "",
      /i2c: simulated.*spi: simulated.*pwm: software-pwm.*analog: simulated/,
    );
  });

  it("gpio config, then watch sees each change made by gpio set", async () => {
    const config = await corralRun([
      ...server,
      "gpio",
      "config",
      "23",
      "--node",
      "pi-cli-hw",
      "--input",
      "--pull",
      "up",
      "--debounce",
      "5ms",
    ]);
    assert.equal(config.code, 0, config.stderr);
    assert.match(config.stdout, /pin 23 is HIGH \(input, pull-up, debounce 5 ms\)/);

    const watch = corralStream([...server, "gpio", "watch", "23", "--node", "pi-cli-hw", "--count", "2"]);
    streams.push(watch.child);
    await eventually(async () =>
      watch.lines.some((line) => / pin 23 current HIGH/.test(line)) ? true : undefined,
    );
    for (const level of ["low", "high"]) {
      const set = await corralRun([...server, "gpio", "set", "23", level, "--node", "pi-cli-hw"]);
      assert.equal(set.code, 0, set.stderr);
    }
    assert.equal(await watch.done, 0, watch.lines.join("\n"));
    assert.deepEqual(
      watch.lines.map((line) => line.replace(/^\S+ /, "")),
      ["gpiochip0 pin 23 current HIGH", "gpiochip0 pin 23 falling LOW", "gpiochip0 pin 23 rising HIGH"],
    );
    const pins = await corralRun([...server, "-o", "json", "gpio", "pins", "--node", "pi-cli-hw"]);
    const pin23 = (JSON.parse(pins.stdout) as { pin?: number; config?: { direction?: string } }[]).find(
      (p) => p.pin === 23,
    );
    assert.equal(pin23?.config?.direction, "PIN_DIRECTION_OUTPUT", "gpio set made it an output");
  });

  it("gpio pwm: software PWM toggles the line (seen by watch), then stops", async () => {
    const start = await corralRun([
      ...server,
      "gpio",
      "pwm",
      "12",
      "--node",
      "pi-cli-hw",
      "--freq",
      "20",
      "--duty",
      "50%",
    ]);
    assert.equal(start.code, 0, start.stderr);
    assert.match(start.stdout, /pin 12: PWM 20 Hz, duty 50\.0% \(software\)/);
    const watch = corralStream([
      ...server,
      "gpio",
      "watch",
      "12",
      "--node",
      "pi-cli-hw",
      "--count",
      "4",
      "--no-current",
    ]);
    streams.push(watch.child);
    assert.equal(await watch.done, 0, watch.lines.join("\n"));
    const kinds = watch.lines.map((line) => /(rising|falling)/.exec(line)?.[1]);
    assert.equal(kinds.length, 4);
    for (let i = 1; i < kinds.length; i++) assert.notEqual(kinds[i], kinds[i - 1], "edges alternate");
    const off = await corralRun([...server, "gpio", "pwm", "12", "--node", "pi-cli-hw", "--off"]);
    assert.match(off.stdout, /pin 12: PWM off/);
    const get = await corralRun([...server, "gpio", "get", "12", "--node", "pi-cli-hw"]);
    assert.match(get.stdout, /pin 12 is LOW/);
    const tooFast = await corralRun([
      ...server,
      "gpio",
      "pwm",
      "12",
      "--node",
      "pi-cli-hw",
      "--freq",
      "5000",
    ]);
    assert.equal(tooFast.code, 2, "software PWM is limited to 100 Hz: INVALID_ARGUMENT");
  });

  it("spi transfer: the loopback answers what it was sent; limits are INVALID_ARGUMENT", async () => {
    const out = await corralRun([...server, "spi", "transfer", "--node", "pi-cli-hw", "0x9f", "01", "dead"]);
    assert.equal(out.code, 0, out.stderr);
    assert.equal(out.stdout.trim(), "0x9f 0x01 0xde 0xad");
    const badCs = await corralRun([...server, "spi", "transfer", "--node", "pi-cli-hw", "--cs", "7", "00"]);
    assert.equal(badCs.code, 2);
    assert.match(badCs.stderr, /chip_select/);
    const badMode = await corralRun([
      ...server,
      "spi",
      "transfer",
      "--node",
      "pi-cli-hw",
      "--mode",
      "4",
      "00",
    ]);
    assert.equal(badMode.code, 2);
  });

  it("i2c: write a register, read it back; address and length limits", async () => {
    const write = await corralRun([
      ...server,
      "i2c",
      "write",
      "--node",
      "pi-cli-hw",
      "--address",
      "0x48",
      "--register",
      "0x10",
      "0xca",
      "0xfe",
    ]);
    assert.equal(write.code, 0, write.stderr);
    assert.match(write.stdout, /wrote 2 bytes/);
    const read = await corralRun([
      ...server,
      "i2c",
      "read",
      "--node",
      "pi-cli-hw",
      "--address",
      "0x48",
      "--register",
      "0x10",
      "--length",
      "3",
    ]);
    assert.equal(read.stdout.trim(), "0xca 0xfe 0x12", "register 0x12 still holds its reset value");
    for (const address of ["0x02", "0x78"]) {
      const bad = await corralRun([...server, "i2c", "read", "--node", "pi-cli-hw", "--address", address]);
      assert.equal(bad.code, 2, `${address}: ${bad.stderr}`);
      assert.match(bad.stderr, /address/);
    }
    const long = await corralRun([
      ...server,
      "i2c",
      "read",
      "--node",
      "pi-cli-hw",
      "--address",
      "0x48",
      "--length",
      "33",
    ]);
    assert.equal(long.code, 2);
    const absent = await corralRun([...server, "i2c", "read", "--node", "pi-cli-hw", "--address", "0x50"]);
    assert.equal(absent.code, 3, "no device answers: UNAVAILABLE");
  });

  it("devices: add, ls, read, write, watch readings of a waveform, rm", async () => {
    const add = async (...args: string[]) => {
      const out = await corralRun([...server, "devices", "add", ...args]);
      assert.equal(out.code, 0, out.stderr);
      return out.stdout;
    };
    assert.match(
      await add("led", "--node", "pi-cli-hw", "--kind", "digital", "--pin", "18"),
      /device led added: digital on pi-cli-hw, pin 18/,
    );
    await add("pot", "--node", "pi-cli-hw", "--kind", "analog", "--channel", "0", "--unit", "mV");
    await add("fan", "--node", "pi-cli-hw", "--kind", "pwm", "--pin", "13", "--set", "pwm_frequency_hz=25");
    await add(
      "temp",
      "--node",
      "pi-cli-hw",
      "--kind",
      "i2c",
      "--bus",
      "1",
      "--address",
      "0x48",
      "--register",
      "0x20",
      "--length",
      "2",
    );
    await add("flash", "--node", "pi-cli-hw", "--kind", "spi", "--set", "spi_read=9f0000");
    const duplicate = await corralRun([
      ...server,
      "devices",
      "add",
      "led",
      "--node",
      "pi-cli-hw",
      "--kind",
      "digital",
    ]);
    assert.equal(duplicate.code, 1, "ALREADY_EXISTS");
    const badAddress = await corralRun([
      ...server,
      "devices",
      "add",
      "x",
      "--node",
      "pi-cli-hw",
      "--kind",
      "i2c",
      "--address",
      "0x80",
    ]);
    assert.equal(badAddress.code, 2);

    const ls = await corralRun([...server, "-o", "json", "devices", "ls"]);
    const listed = JSON.parse(ls.stdout) as { name: string; nodeName: string }[];
    assert.deepEqual(
      listed.map((d) => d.name),
      ["fan", "flash", "led", "pot", "temp"],
    );
    assert.ok(listed.every((d) => d.nodeName === "pi-cli-hw"));

    const write = await corralRun([...server, "devices", "write", "led", "high"]);
    assert.equal(write.code, 0, write.stderr);
    const readLed = await corralRun([...server, "-o", "json", "devices", "read", "led"]);
    assert.equal((JSON.parse(readLed.stdout) as { value: number }).value, 1);
    const gpio = await corralRun([...server, "gpio", "get", "18", "--node", "pi-cli-hw"]);
    assert.match(gpio.stdout, /pin 18 is HIGH/, "the device is the node's pin 18");

    const fan = await corralRun([...server, "devices", "write", "fan", "0.25"]);
    assert.match(fan.stdout, /pin 13: PWM 25 Hz, duty 25\.0% \(software\)/);
    await corralRun([...server, "devices", "write", "fan", "0"]);

    await corralRun([...server, "devices", "write", "temp", "0x01", "0x90"]);
    const temp = await corralRun([...server, "-o", "json", "devices", "read", "temp"]);
    assert.equal((JSON.parse(temp.stdout) as { value: number }).value, 0x0190);
    const flash = await corralRun([...server, "devices", "read", "flash"]);
    assert.match(flash.stdout, /raw 0x9f 0x00 0x00/);
    const analogWrite = await corralRun([...server, "devices", "write", "pot", "1"]);
    assert.equal(analogWrite.code, 1, "an analog input cannot be written: FAILED_PRECONDITION");

    const watch = await corralRun([
      ...server,
      "-o",
      "json",
      "devices",
      "watch",
      "pot",
      "--rate",
      "50",
      "--count",
      "40",
    ]);
    assert.equal(watch.code, 0, watch.stderr);
    const readings = watch.stdout
      .trim()
      .split("\n")
      .map((line) => JSON.parse(line) as { seq: string; value?: number; unit: string; time: string })
      // proto3 JSON leaves a value of 0 out
      .map((r) => ({ ...r, value: r.value ?? 0 }));
    assert.equal(readings.length, 40);
    assert.deepEqual(
      readings.map((r) => Number(r.seq)),
      Array.from({ length: 40 }, (_, i) => i + 1),
    );
    // 40 readings at 50/s span 0.78 s of a 0.5 Hz sine: the values move, within 0..3300 mV.
    assert.ok(readings.every((r) => r.value >= 0 && r.value <= 3300 && r.unit === "mV"));
    assert.ok(new Set(readings.map((r) => Math.round(r.value))).size > 10, "a waveform, not a constant");
    const spacing = Date.parse(readings[39]?.time ?? "") - Date.parse(readings[0]?.time ?? "");
    assert.ok(
      spacing >= 770 && spacing <= 790,
      `samples are 20 ms apart by their timestamps (${spacing} ms for 39 gaps)`,
    );

    const tooFast = await corralRun([...server, "devices", "watch", "pot", "--rate", "5000", "--count", "1"]);
    assert.equal(tooFast.code, 2);

    const rm = await corralRun([...server, "devices", "rm", "pot"]);
    assert.equal(rm.code, 0, rm.stderr);
    const gone = await corralRun([...server, "devices", "read", "pot"]);
    assert.equal(gone.code, 1);
    assert.match(gone.stderr, /no device named "pot"/);
  });
});
