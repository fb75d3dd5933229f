import assert from "node:assert/strict";
import { mkdtemp, readFile, rm } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { after, before, describe, it } from "node:test";
import { Code, ConnectError } from "@connectrpc/connect";
import { ServerCredentials } from "@grpc/grpc-js";
import type { ConnectionStateName } from "../../../src/agent/connection-state.ts";
import { SimulatedGpio } from "../../../src/agent/hardware/gpio/simulated-gpio.ts";
import {
  metricsAndGpioService,
  toSystemMetricsMessage,
} from "../../../src/agent/services/node-agent/metrics-and-gpio-service.ts";
import { GPIOAction, GPIOState, NodeAgent } from "../../../src/gen/picontroller_pb.ts";
import { RpcServer } from "../../../src/rpc/rpc-server.ts";
import { corralVersion } from "../../../src/version.ts";
import { plaintextClient } from "../../helpers/clients.ts";

/** Asserts that a call fails with `code` and a message matching `message`. */
async function failsWith(call: () => Promise<unknown>, code: Code, message?: RegExp): Promise<void> {
  let caught: unknown;
  try {
    await call();
  } catch (error) {
    caught = error;
  }
  assert.ok(caught instanceof ConnectError, `expected ${Code[code]}, got ${String(caught)}`);
  assert.equal(caught.code, code, `${Code[caught.code]}: ${caught.rawMessage}`);
  if (message !== undefined) assert.match(caught.rawMessage, message);
}

describe("NodeAgent GetSystemMetrics / ControlGPIO / HealthCheck over gRPC", () => {
  let dir: string;
  let server: RpcServer;
  let gpio: SimulatedGpio;
  let client: ReturnType<typeof plaintextClient<typeof NodeAgent>>;
  let controllerState: ConnectionStateName = "CONNECTED";
  const startedAt = Date.now() - 42_000;

  before(async () => {
    dir = await mkdtemp(path.join(os.tmpdir(), "corral-nodeagent-"));
    gpio = await SimulatedGpio.open({ statePath: path.join(dir, "gpio-sim.json") });
    server = new RpcServer().add(
      NodeAgent,
      metricsAndGpioService({
        gpio,
        gpioReason: "simulated GPIO: no GPIO character device (/dev/gpiochip*)",
        nodeId: () => "node-7",
        dataDir: dir,
        startedAt,
        controllerState: () => controllerState,
      }),
    );
    const port = await server.listen("127.0.0.1:0", ServerCredentials.createInsecure());
    client = plaintextClient(NodeAgent, port);
  });
  after(async () => {
    await server.close(1_000);
    await gpio.close();
    await rm(dir, { recursive: true, force: true });
  });

  it("the reference's sequence: HealthCheck OK, GetSystemMetrics, ControlGPIO(18, HIGH), then READ 18 → HIGH", async () => {
    const health = await client.healthCheck({}, { timeoutMs: 10_000 });
    assert.equal(
      health.status,
      "OK",
      health.checks.map((check) => `${check.name} ${check.status}: ${check.message}`).join("\n"),
    );
    assert.equal(health.version, corralVersion);
    assert.equal(health.gpioBackend, "simulated");
    assert.equal(health.nodeId, "node-7");
    assert.ok(health.uptimeSeconds >= 42n && health.uptimeSeconds < 120n, `uptime ${health.uptimeSeconds}`);
    assert.ok(Math.abs(Number(health.timestamp) - Date.now()) < 10_000);
    assert.deepEqual(
      health.checks.map((check) => check.name).filter((name) => name !== "temperature"),
      ["controller", "disk", "memory", "gpio"],
    );
    assert.match(
      health.checks.find((check) => check.name === "gpio")?.message ?? "",
      /no GPIO character device/,
    );

    const metrics = await client.getSystemMetrics({}, { timeoutMs: 10_000 });
    assert.ok(metrics.cpuUsage >= 0 && metrics.cpuUsage <= 100, `cpu_usage ${metrics.cpuUsage}`);
    const meminfo = await readFile("/proc/meminfo", "utf8");
    const memTotalKb = BigInt(/^MemTotal:\s+(\d+) kB/m.exec(meminfo)?.[1] ?? "0");
    assert.equal(metrics.memoryTotalBytes, memTotalKb * 1024n);
    assert.ok(metrics.memoryUsedBytes > 0n && metrics.memoryUsedBytes < metrics.memoryTotalBytes);
    assert.ok(metrics.memoryUsage > 0 && metrics.memoryUsage < 100);
    assert.equal(metrics.nodeId, "node-7");
    assert.equal(metrics.hostname, os.hostname());
    assert.ok(metrics.cpuCount >= 1);
    assert.ok(metrics.uptimeSeconds > 0n);
    assert.ok(metrics.load !== undefined);
    assert.ok(metrics.network.some((nic) => nic.name === "lo"));
    assert.ok(metrics.disks.length >= 1, "at least the root file system");
    assert.ok(Math.abs(Number(metrics.timestamp) - Date.now()) < 10_000);

    const written = await client.controlGPIO({ pin: 18, state: GPIOState.HIGH }, { timeoutMs: 10_000 });
    assert.equal(written.success, true);
    assert.equal(written.pin, 18);
    assert.equal(written.state, GPIOState.HIGH);
    assert.equal(written.backend, "simulated");
    assert.match(written.message, /line 18 driven HIGH/);

    const read = await client.controlGPIO({ pin: 18, action: GPIOAction.READ }, { timeoutMs: 10_000 });
    assert.equal(read.success, true);
    assert.equal(read.state, GPIOState.HIGH);
  });

  it("WRITE LOW, PULSE, and READ of an untouched pin", async () => {
    const low = await client.controlGPIO({ pin: 18, state: GPIOState.LOW, action: GPIOAction.WRITE });
    assert.equal(low.state, GPIOState.LOW);
    const started = Date.now();
    const pulsed = await client.controlGPIO({
      pin: 17,
      state: GPIOState.HIGH,
      action: GPIOAction.PULSE,
      pulseMs: 60,
    });
    assert.ok(Date.now() - started >= 55);
    assert.equal(pulsed.state, GPIOState.LOW, "a HIGH pulse ends LOW");
    assert.match(pulsed.message, /pulsed HIGH for 60 ms, now LOW/);
    const untouched = await client.controlGPIO({ pin: 40, action: GPIOAction.READ });
    assert.equal(untouched.state, GPIOState.LOW);
  });

  it("invalid pin, state, action, pulse length or chip: INVALID_ARGUMENT", async () => {
    await failsWith(
      () => client.controlGPIO({ pin: 54, state: GPIOState.HIGH }),
      Code.InvalidArgument,
      /0\.\.53/,
    );
    await failsWith(
      () => client.controlGPIO({ pin: -3, state: GPIOState.HIGH }),
      Code.InvalidArgument,
      /pin: -3/,
    );
    await failsWith(
      () => client.controlGPIO({ pin: 18, state: 7 as GPIOState }),
      Code.InvalidArgument,
      /state: 7.*LOW.*HIGH/,
    );
    await failsWith(
      () => client.controlGPIO({ pin: 18, state: GPIOState.HIGH, action: 9 as GPIOAction }),
      Code.InvalidArgument,
      /action: 9/,
    );
    await failsWith(
      () => client.controlGPIO({ pin: 18, state: GPIOState.HIGH, action: GPIOAction.PULSE, pulseMs: 0 }),
      Code.InvalidArgument,
      /pulse_ms/,
    );
    await failsWith(
      () => client.controlGPIO({ pin: 18, state: GPIOState.HIGH, chip: "gpiochip4" }),
      Code.InvalidArgument,
      /gpiochip4.*gpiochip0/,
    );
  });

  it("a line another process holds: FAILED_PRECONDITION naming it", async () => {
    gpio.hold(21, "pwm-fan");
    try {
      await failsWith(
        () => client.controlGPIO({ pin: 21, state: GPIOState.HIGH }),
        Code.FailedPrecondition,
        /"pwm-fan"/,
      );
    } finally {
      gpio.release(21);
    }
  });

  it("HealthCheck: DEGRADED while the controller is not connected", async () => {
    controllerState = "DISCONNECTED";
    try {
      const health = await client.healthCheck({});
      assert.equal(health.status, "DEGRADED");
      const controller = health.checks.find((check) => check.name === "controller");
      assert.equal(controller?.status, "DEGRADED");
    } finally {
      controllerState = "CONNECTED";
    }
  });

  it("a client that gives up ends a long pulse (CANCELLED on the server) and the pin ends LOW", async () => {
    const controller = new AbortController();
    const call = client.controlGPIO(
      { pin: 22, state: GPIOState.HIGH, action: GPIOAction.PULSE, pulseMs: 30_000 },
      { signal: controller.signal },
    );
    setTimeout(() => controller.abort(), 100);
    await failsWith(() => call, Code.Canceled);
    // The server side finishes the cancelled pulse by leaving the opposite level.
    for (let waited = 0; waited < 3_000; waited += 25) {
      const read = await client.controlGPIO({ pin: 22, action: GPIOAction.READ }, { timeoutMs: 5_000 });
      if (read.state === GPIOState.LOW) return;
      await new Promise((resolve) => setTimeout(resolve, 25));
    }
    assert.fail("pin 22 did not return LOW");
  });
});

describe("toSystemMetricsMessage", () => {
  it("converts byte counts to uint64 and leaves out a missing temperature", () => {
    const message = toSystemMetricsMessage(
      {
        cpuUsage: 15.2,
        memoryTotalBytes: 8 * 1024 ** 3,
        memoryUsedBytes: 1024,
        memoryUsage: 1e-5,
        swapTotalBytes: 0,
        swapUsedBytes: 0,
        disks: [{ mount: "/", filesystem: "/dev/sda1", totalBytes: 2 ** 40, usedBytes: 2 ** 39, usage: 50 }],
        load: { load1: 1, load5: 2, load15: 3 },
        uptimeSeconds: 100.9,
        network: [{ name: "eth0", rxBytes: 1, txBytes: 2, rxPackets: 3, txPackets: 4 }],
        temperatureCelsius: undefined,
        timestamp: 1_700_000_000_000,
        hostname: "pi-1",
        cpuCount: 4,
        gpus: [
          {
            uuid: "GPU-1",
            name: "NVIDIA L4",
            utilizationPercent: 37,
            memoryUsedBytes: 2 ** 30,
            memoryTotalBytes: 24 * 2 ** 30,
          },
        ],
      },
      "node-1",
    );
    assert.equal(message.cpuUsage, 15.2);
    assert.equal(message.memoryTotalBytes, 8n * 1024n ** 3n);
    assert.equal(message.disks[0]?.totalBytes, 2n ** 40n);
    assert.equal(message.uptimeSeconds, 100n);
    assert.equal(message.temperatureCelsius, undefined);
    assert.equal(message.network[0]?.txPackets, 4n);
    assert.equal(message.timestamp, 1_700_000_000_000n);
    assert.equal(message.nodeId, "node-1");
    assert.equal(message.gpus[0]?.utilizationPercent, 37);
    assert.equal(message.gpus[0]?.memoryTotalBytes, 24n * 2n ** 30n);
    assert.equal(message.gpus[0]?.temperatureCelsius, undefined);
  });
});
