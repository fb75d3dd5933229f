import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { openConnection } from "../../src/client/connection.ts";
import { ClusterService } from "../../src/gen/corral/v1/cluster_pb.ts";
import { NodeStatus, NodesService } from "../../src/gen/corral/v1/nodes_pb.ts";
import { eventually, nodeToken, startTestAgent, type TestAgent } from "../helpers/agent.ts";
import { plaintextClient } from "../helpers/clients.ts";
import type { TestController } from "../helpers/controller.ts";
import { etcdMissing } from "../helpers/etcd.ts";
import { type HaCluster, startHaCluster } from "./ha-cluster.ts";

const missing = etcdMissing();
const cluster = (c: TestController) => `127.0.0.1:${c.clusterPort}`;

describe("an agent with several controllers", { skip: missing }, () => {
  let ha: HaCluster;
  let agent: TestAgent;
  /** The controller the agent joins through: a follower, so that liveness has to cross controllers. */
  let a: TestController;
  /** The leader. */
  let b: TestController;

  before(async () => {
    // Heartbeats every ~1 s, suspect after ~3 s of silence: failures show within a test.
    ha = await startHaCluster({
      names: ["ctl-a", "ctl-b"],
      liveness: { minInterval: "1s", downAfter: "3s" },
      lastSeenFlush: "250ms",
    });
    const leader = await eventually(async () => ha.leader(), 10_000, "a leader");
    b = leader;
    a = ha.controllers.find((c) => c !== leader) as TestController;
    agent = await startTestAgent({ name: "roamer" });
    await agent.agent.joinIfAsked(
      `${cluster(a)},${cluster(b)}`,
      await nodeToken(a),
      AbortSignal.timeout(20_000),
    );
    await eventually(
      async () => (agent.agent.link.state.value === "CONNECTED" ? true : undefined),
      15_000,
      "the agent connected",
    );
  });
  after(async () => {
    await agent?.close();
    await ha?.close();
  });

  const nodeStatus = async (c: TestController) =>
    (await plaintextClient(NodesService, c.bridgePort).listNodes({})).nodes.find((n) => n.name === "roamer")
      ?.status;
  const ready = NodeStatus.READY;

  it("keeps the list of controllers in its data dir, the one it joined through first", () => {
    assert.deepEqual(agent.agent.link.controllerAddresses, [cluster(a), cluster(b)]);
    assert.equal(agent.agent.link.controllerAddress, cluster(a));
    assert.deepEqual(agent.agent.identity.controller?.addresses, [cluster(a), cluster(b)]);
  });

  it("stays ready on every controller while it heartbeats to one of them only", async () => {
    // Liveness is written by the leader, whichever controller the agent talks to: the heartbeats it
    // hears elsewhere reach it in batches. Several suspect periods pass without a false suspicion.
    const started = Date.now();
    while (Date.now() - started < 6_000) {
      assert.equal(await nodeStatus(a), ready);
      assert.equal(await nodeStatus(b), ready);
      await new Promise((resolve) => setTimeout(resolve, 500));
    }
    assert.equal(agent.agent.link.controllerAddress, cluster(a), "the agent stayed on A");
  });

  it("moves to the next controller when its controller goes away, and heartbeats there", async () => {
    const nodeId = agent.agent.identity.nodeId;
    await a.close();
    await eventually(
      async () =>
        agent.agent.link.controllerAddress === cluster(b) && agent.agent.link.state.value === "CONNECTED"
          ? true
          : undefined,
      20_000,
      "the agent on B",
    );
    const membership = b.controller.context.heartbeats as { lastSeen?(id: string): number | undefined };
    const seenAt = Date.now();
    await eventually(
      async () => ((membership.lastSeen?.(nodeId) ?? 0) > seenAt ? true : undefined),
      10_000,
      "a heartbeat on B",
    );
    // The node never went suspect through the move.
    const started = Date.now();
    while (Date.now() - started < 4_000) {
      assert.equal(await nodeStatus(b), ready);
      await new Promise((resolve) => setTimeout(resolve, 500));
    }
  });

  it("lets the CLI name several controllers: a call goes to the first one that answers", async () => {
    // A is closed: its bridge refuses connections, so the call moves on to B.
    const connection = await openConnection({
      server: `127.0.0.1:${a.bridgePort},127.0.0.1:${b.bridgePort}`,
    });
    const status = await connection.call(connection.client(ClusterService).getClusterStatus({}));
    const name = (c: TestController) => c.controller.context.facts.controllerName;
    assert.equal(status.controllerName, name(b));
    assert.deepEqual(
      status.controllers.map((c) => c.name),
      [name(b)],
      "A left the list of live controllers when it closed",
    );
  });
});
