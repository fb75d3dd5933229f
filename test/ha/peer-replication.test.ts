import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { Code, ConnectError } from "@connectrpc/connect";
import { AgentDialer } from "../../src/controller/agent-dialer.ts";
import { MetricsService } from "../../src/gen/corral/v1/metrics_pb.ts";
import { ControllerPeerService } from "../../src/gen/corral/v1/peers_pb.ts";
import { eventually, nodeToken, startTestAgent, type TestAgent } from "../helpers/agent.ts";
import { plaintextClient } from "../helpers/clients.ts";
import type { TestController } from "../helpers/controller.ts";
import { etcdMissing } from "../helpers/etcd.ts";
import { type HaCluster, startHaCluster } from "./ha-cluster.ts";

const address = (c: TestController) => `127.0.0.1:${c.clusterPort}`;
const codeOf = (error: unknown) => (error instanceof ConnectError ? error.code : undefined);

describe("what agents tell one controller reaches the others", { skip: etcdMissing() }, () => {
  let ha: HaCluster;
  let agent: TestAgent;
  let a: TestController;
  let b: TestController;
  let nodeId: string;

  before(async () => {
    ha = await startHaCluster({
      names: ["ctl-a", "ctl-b"],
      liveness: { minInterval: "1s" },
      lastSeenFlush: "250ms",
      metrics: { interval: "1s" },
    });
    [a, b] = ha.controllers as [TestController, TestController];
    agent = await startTestAgent({ name: "reporter" });
    await agent.agent.joinIfAsked(address(a), await nodeToken(a), AbortSignal.timeout(20_000));
    nodeId = agent.agent.identity.nodeId;
  });
  after(async () => {
    await agent?.close();
    await ha?.close();
  });

  it("serves the node's metrics history, latest sample and live samples from the controller it does not talk to", async () => {
    assert.equal(agent.agent.link.controllerAddress, address(a));
    const onB = plaintextClient(MetricsService, b.bridgePort);
    const history = await eventually(
      async () => {
        const { samples } = await onB.getNodeMetricsHistory({ nodeId: "reporter" });
        return samples.length >= 2 ? samples : undefined;
      },
      20_000,
      "samples on B",
    );
    const onA = await plaintextClient(MetricsService, a.bridgePort).getNodeMetricsHistory({
      nodeId: "reporter",
    });
    // The same samples, as A took them in (B may be a batch behind).
    const aTimes = onA.samples.map((s) => s.timeUnixMs);
    for (const sample of history) assert.ok(aTimes.includes(sample.timeUnixMs));
    const latest = await onB.listLatestMetrics({});
    assert.ok(latest.nodes.some((n) => n.nodeId === nodeId && n.nodeName === "reporter"));

    const watch = new AbortController();
    try {
      const after = history.at(-1)?.timeUnixMs ?? 0;
      for await (const batch of onB.watchNodeMetrics(
        { nodeId: "reporter", sinceUnixMs: after },
        { signal: watch.signal, timeoutMs: 20_000 },
      )) {
        if (batch.samples.some((s) => s.timeUnixMs > after)) break;
      }
    } finally {
      watch.abort();
    }
  });

  it("gives the other controller the load figures heartbeats carry (placement reads them on the leader)", async () => {
    const load = await eventually(async () => b.controller.context.loads.latest(nodeId), 15_000, "load on B");
    assert.ok(load.cpuUsage >= 0 && load.cpuUsage <= 100);
    assert.ok(load.memoryUsedMb > 0);
  });

  it("takes Replicate from controllers only, and a bad batch changes nothing", async () => {
    await assert.rejects(
      agent.agent.link.client(ControllerPeerService).replicate({ from: "x" }),
      (e: unknown) => codeOf(e) === Code.PermissionDenied,
    );
    await assert.rejects(
      plaintextClient(ControllerPeerService, b.bridgePort).replicate({ from: "x" }),
      (e: unknown) => codeOf(e) === Code.PermissionDenied && /controllers/.test(String(e)),
    );
    // A as a controller, with one good node batch and one bad sample.
    const dialer = new AgentDialer(
      a.controller.context.registry,
      a.controller.ca,
      a.controller.context.facts.controllerNodeId,
    );
    const peer = await dialer.clientAt(ControllerPeerService, address(b));
    const before = await plaintextClient(MetricsService, b.bridgePort).getNodeMetricsHistory({
      nodeId: "reporter",
    });
    const future = Date.now() + 3_600_000;
    await assert.rejects(
      peer.replicate({
        from: "ctl-a",
        samples: [
          { nodeId, samples: [{ timeUnixMs: future, cpuPercent: 10 }] },
          { nodeId, samples: [{ timeUnixMs: future + 1, cpuPercent: Number.NaN }] },
        ],
      }),
      (e: unknown) => codeOf(e) === Code.InvalidArgument && /cpu_percent/.test(String(e)),
    );
    const now = await plaintextClient(MetricsService, b.bridgePort).getNodeMetricsHistory({
      nodeId: "reporter",
    });
    assert.ok(!now.samples.some((s) => s.timeUnixMs >= future), "nothing of the bad batch was kept");
    assert.ok(now.samples.length >= before.samples.length);
    await assert.rejects(
      peer.replicate({ from: "" }),
      (e: unknown) => codeOf(e) === Code.InvalidArgument && /from/.test(String(e)),
    );
    // Nodes that are not members are not kept, and a load from a clock ahead is not newer than now.
    const stranger = "00000000-0000-4000-8000-000000000000";
    await peer.replicate({
      from: "ctl-a",
      samples: [{ nodeId: stranger, samples: [{ timeUnixMs: 1, cpuPercent: 1 }] }],
      loads: [
        { nodeId: stranger, cpuUsage: 1, memoryUsedMb: 1, atUnixMs: 1 },
        { nodeId, cpuUsage: 99, memoryUsedMb: 1, atUnixMs: future },
      ],
    });
    assert.ok(!b.controller.context.metrics.history.nodeIds().includes(stranger));
    assert.equal(b.controller.context.loads.latest(stranger), undefined);
    assert.ok((b.controller.context.loads.latest(nodeId)?.at ?? 0) <= Date.now());
    // A controller whose advertised address leads back to itself hears so.
    const self = await new AgentDialer(
      b.controller.context.registry,
      b.controller.ca,
      b.controller.context.facts.controllerNodeId,
    ).clientAt(ControllerPeerService, address(b));
    await assert.rejects(
      self.replicate({ from: "ctl-b" }),
      (e: unknown) => codeOf(e) === Code.FailedPrecondition && /advertiseAddress/.test(String(e)),
    );
  });
});
