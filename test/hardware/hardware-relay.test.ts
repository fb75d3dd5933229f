import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { Code, ConnectError } from "@connectrpc/connect";
import { DeviceKind, DevicesService } from "../../src/gen/corral/v1/devices_pb.ts";
import {
  HardwareService,
  PinDirection,
  PinEdge,
  PinEventKind,
  PinPull,
} from "../../src/gen/corral/v1/hardware_pb.ts";
import { NodeAgent } from "../../src/gen/picontroller_pb.ts";
import { joinWithToken, startTestAgent, type TestAgent } from "../helpers/agent.ts";
import { plaintextClient } from "../helpers/clients.ts";
import { startTestController, type TestController } from "../helpers/controller.ts";

const codeOf = (error: unknown) => (error instanceof ConnectError ? error.code : undefined);

describe("HardwareService through the controller to an agent's simulated hardware", () => {
  let cluster: TestController;
  let node: TestAgent;
  before(async () => {
    cluster = await startTestController();
    node = await startTestAgent({ name: "pi-hw" });
    await joinWithToken(cluster, node);
  });
  after(async () => {
    await node.close();
    await cluster.close();
  });

  it("WritePin on the node, ReadPin reads it back; the controller's own pins are its own", async () => {
    const hardware = plaintextClient(HardwareService, cluster.bridgePort);
    const written = await hardware.writePin({ nodeId: "pi-hw", pin: 18, level: 1 });
    assert.equal(written.pin?.level, 1);
    assert.equal(written.pin?.config?.direction, PinDirection.OUTPUT);
    const read = await hardware.readPin({ nodeId: "pi-hw", pin: 18 });
    assert.equal(read.pin?.level, 1);
    const own = await hardware.readPin({ pin: 18 });
    assert.equal(own.pin?.level, 0);
    // The Pi-Controller NodeAgent on the node sees the same line.
    const legacy = await plaintextClient(NodeAgent, node.localPort).controlGPIO({ pin: 18, action: 1 });
    assert.equal(legacy.state, 1);
    const audited = await cluster.controller.context.audit.recent(50);
    assert.ok(
      audited.some(
        (entry) => entry.method === "/corral.v1.HardwareService/WritePin" && entry.result === "OK",
      ),
      "the write is in the controller's audit log",
    );
    assert.ok(
      !audited.some((entry) => entry.method === "/corral.v1.HardwareService/ReadPin"),
      "reads are not",
    );
  });

  it("WatchPins: the current level first, then each write as an edge", async () => {
    const hardware = plaintextClient(HardwareService, cluster.bridgePort);
    await hardware.writePin({ nodeId: "pi-hw", pin: 17, level: 0 });
    const abort = new AbortController();
    const stream = hardware.watchPins({ nodeId: "pi-hw", pins: [17] }, { signal: abort.signal });
    const events: { kind: PinEventKind; level: number }[] = [];
    const iterator = stream[Symbol.asyncIterator]();
    const first = await iterator.next();
    assert.equal(first.value?.event?.kind, PinEventKind.CURRENT);
    assert.equal(first.value?.event?.level, 0);
    for (const level of [1, 0, 1]) {
      await hardware.writePin({ nodeId: "pi-hw", pin: 17, level });
      const next = await iterator.next();
      const event = next.value?.event;
      events.push({ kind: event?.kind ?? PinEventKind.UNSPECIFIED, level: event?.level ?? -1 });
    }
    abort.abort();
    assert.deepEqual(events, [
      { kind: PinEventKind.RISING, level: 1 },
      { kind: PinEventKind.FALLING, level: 0 },
      { kind: PinEventKind.RISING, level: 1 },
    ]);
  });

  it("ConfigurePin: an input with a pull-up reads 1, active-low inverts it", async () => {
    const hardware = plaintextClient(HardwareService, cluster.bridgePort);
    const up = await hardware.configurePin({
      nodeId: "pi-hw",
      pin: 5,
      config: { direction: PinDirection.INPUT, pull: PinPull.UP, edge: PinEdge.BOTH },
    });
    assert.equal(up.pin?.level, 1);
    assert.equal(up.pin?.config?.pull, PinPull.UP);
    const inverted = await hardware.configurePin({
      nodeId: "pi-hw",
      pin: 5,
      config: { direction: PinDirection.INPUT, pull: PinPull.UP, activeLow: true },
    });
    assert.equal(inverted.pin?.level, 0);
    await assert.rejects(
      hardware.configurePin({ nodeId: "pi-hw", pin: 5, config: { debounceMs: 5000 } }),
      (e) => codeOf(e) === Code.InvalidArgument,
    );
  });

  it("WatchReadings: a client that stops reading is dropped with RESOURCE_EXHAUSTED, not buffered", async () => {
    const devices = plaintextClient(DevicesService, cluster.bridgePort);
    await devices.addDevice({
      device: { name: "wave", nodeId: "pi-hw", kind: DeviceKind.ANALOG, register: 1 },
    });
    const abort = new AbortController();
    const limit = 120_000n;
    const stream = devices.watchReadings(
      { name: "wave", rateHz: 1000, maxReadings: limit },
      { signal: abort.signal },
    );
    const iterator = stream[Symbol.asyncIterator]();
    const first = await iterator.next();
    assert.equal(first.value?.readings[0]?.seq, 1n);
    // Stall: the transport's flow-control windows fill, then the controller's bounded queue overflows.
    await new Promise((resolve) => setTimeout(resolve, 10_000));
    let received = first.value?.readings.length ?? 0;
    let caught: unknown;
    try {
      for (;;) {
        const next = await iterator.next();
        if (next.done) break;
        received += next.value.readings.length;
      }
    } catch (error) {
      caught = error;
    }
    abort.abort();
    assert.equal(codeOf(caught), Code.ResourceExhausted, String(caught));
    assert.ok(BigInt(received) < limit, `dropped after ${received} readings`);
    await devices.removeDevice({ name: "wave" });
  });
});
