import assert from "node:assert/strict";
import { readFile } from "node:fs/promises";
import { after, before, describe, it } from "node:test";
import { Code, ConnectError, createClient } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import { GPIOAction, GPIOState, NodeAgent } from "../../src/gen/picontroller_pb.ts";
import { operatorIdentityUri } from "../../src/security/principal.ts";
import { targetNodeHeader } from "../../src/wire/target-node.ts";
import { joinWithToken, startTestAgent, type TestAgent } from "../helpers/agent.ts";
import { plaintextClient } from "../helpers/clients.ts";
import { startTestController, type TestController } from "../helpers/controller.ts";

const codeOf = (error: unknown) => (error instanceof ConnectError ? error.code : undefined);
const on = (node: string) => ({ headers: { [targetNodeHeader]: node } });

describe("Pi-Controller's sequence: the control plane calls the node agent over mTLS", () => {
  let cluster: TestController;
  let node: TestAgent;
  before(async () => {
    cluster = await startTestController();
    node = await startTestAgent({ name: "pi-1" });
    await joinWithToken(cluster, node);
  });
  after(async () => {
    await node.close();
    await cluster.close();
  });

  it("HealthCheck → OK, GetSystemMetrics → real figures, ControlGPIO(18, HIGH) → success, then 18 reads HIGH", async () => {
    const agent = plaintextClient(NodeAgent, cluster.bridgePort);
    const health = await agent.healthCheck({}, on("pi-1"));
    assert.equal(health.status, "OK", JSON.stringify(health.checks));
    assert.equal(health.nodeId, node.agent.identity.nodeId, "answered by the node, not the controller");
    assert.equal(health.gpioBackend, "simulated");

    const metrics = await agent.getSystemMetrics({}, on("pi-1"));
    assert.ok(metrics.cpuUsage >= 0 && metrics.cpuUsage <= 100, `cpu_usage ${metrics.cpuUsage}`);
    const memTotalKb = Number(/MemTotal:\s+(\d+) kB/.exec(await readFile("/proc/meminfo", "utf8"))?.[1]);
    assert.equal(metrics.memoryTotalBytes, BigInt(memTotalKb) * 1024n);

    const set = await agent.controlGPIO({ pin: 18, state: GPIOState.HIGH }, on("pi-1"));
    assert.equal(set.success, true);
    assert.equal(set.state, GPIOState.HIGH);
    const read = await agent.controlGPIO({ pin: 18, action: GPIOAction.READ }, on("pi-1"));
    assert.equal(read.state, GPIOState.HIGH);
    // The controller's own node has its own pins: 18 there is untouched.
    const own = await agent.controlGPIO({ pin: 18, action: GPIOAction.READ });
    assert.equal(own.state, GPIOState.LOW);
    await assert.rejects(
      agent.controlGPIO({ pin: 99, state: GPIOState.HIGH }, on("pi-1")),
      (e) => codeOf(e) === Code.InvalidArgument,
    );
  });

  it("runs allow-listed commands on the node and refuses the rest", async () => {
    const agent = plaintextClient(NodeAgent, cluster.bridgePort);
    const uptime = await agent.executeCommand({ command: "uptime" }, on("pi-1"));
    assert.equal(uptime.exitCode, 0);
    assert.match(uptime.stdout, /load average/);
    await assert.rejects(
      agent.executeCommand({ command: "sh", args: ["-c", "id"] }, on("pi-1")),
      (e) => codeOf(e) === Code.PermissionDenied,
    );
  });

  it("answers NOT_FOUND for an unknown node and UNAVAILABLE for one that cannot be reached", async () => {
    const agent = plaintextClient(NodeAgent, cluster.bridgePort);
    await assert.rejects(agent.healthCheck({}, on("nobody")), (e) => codeOf(e) === Code.NotFound);
    await cluster.controller.context.registry.register({
      name: "ghost",
      address: "127.0.0.1:1",
      status: "ready",
    });
    await assert.rejects(
      agent.healthCheck({}, on("ghost")),
      (e) => codeOf(e) === Code.Unavailable && /ghost/.test(String(e)),
    );
  });

  it("lets a viewer read health but not drive a pin", async () => {
    const viewer = await cluster.controller.ca.issue({
      commonName: "vera",
      dnsNames: [],
      ipAddresses: [],
      uris: [operatorIdentityUri("viewer", "vera")],
      validityMs: 60_000,
      usage: "client",
    });
    const agent = createClient(
      NodeAgent,
      createGrpcTransport({
        baseUrl: `https://127.0.0.1:${cluster.clusterPort}`,
        nodeOptions: {
          ca: cluster.controller.ca.certificatePem,
          cert: viewer.certificatePem,
          key: viewer.privateKeyPem,
        },
      }),
    );
    assert.equal((await agent.healthCheck({}, on("pi-1"))).status, "OK");
    await assert.rejects(
      agent.controlGPIO({ pin: 18, state: GPIOState.LOW }, on("pi-1")),
      (e) => codeOf(e) === Code.PermissionDenied,
    );
  });

  it("does not let another node drive this node's hardware directly", async () => {
    const other = await startTestAgent({ name: "pi-2" });
    try {
      await joinWithToken(cluster, other);
      const credentials = await Promise.all(
        ["node.crt", "node.key"].map((f) => readFile(`${other.dataDir}/${f}`, "utf8")),
      );
      const direct = createClient(
        NodeAgent,
        createGrpcTransport({
          baseUrl: `https://${node.agent.listenAddress}`,
          nodeOptions: {
            ca: cluster.controller.ca.certificatePem,
            cert: credentials[0],
            key: credentials[1],
          },
        }),
      );
      await assert.rejects(
        direct.controlGPIO({ pin: 18, state: GPIOState.LOW }),
        (e) => codeOf(e) === Code.PermissionDenied,
      );
    } finally {
      await other.close();
    }
  });
});
