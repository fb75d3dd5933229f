import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { NodeStatus, NodesService } from "../../src/gen/corral/v1/nodes_pb.ts";
import { eventually, nodeToken, startTestAgent, type TestAgent } from "../helpers/agent.ts";
import { plaintextClient } from "../helpers/clients.ts";
import type { TestController } from "../helpers/controller.ts";
import { etcdMissing } from "../helpers/etcd.ts";
import { type HaCluster, startHaCluster } from "./ha-cluster.ts";

const address = (c: TestController) => `127.0.0.1:${c.clusterPort}`;

describe("an agent learns the cluster's controllers from heartbeat answers", { skip: etcdMissing() }, () => {
  let ha: HaCluster;
  let agent: TestAgent;
  let a: TestController;
  let b: TestController;

  before(async () => {
    ha = await startHaCluster({
      names: ["ctl-a", "ctl-b"],
      liveness: { minInterval: "1s", downAfter: "3s" },
      lastSeenFlush: "250ms",
    });
    [a, b] = ha.controllers as [TestController, TestController];
    agent = await startTestAgent({ name: "learner" });
    // Told about A only.
    await agent.agent.joinIfAsked(address(a), await nodeToken(a), AbortSignal.timeout(20_000));
  });
  after(async () => {
    await agent?.close();
    await ha?.close();
  });

  it("adds the controllers it was not told about after the ones it was, and keeps them in its data dir", async () => {
    await eventually(
      async () => (agent.agent.link.controllerAddresses.includes(address(b)) ? true : undefined),
      20_000,
      "B learned",
    );
    assert.deepEqual(agent.agent.link.controllerAddresses, [address(a), address(b)]);
    assert.deepEqual(
      agent.agent.identity.controller?.addresses,
      [address(a)],
      "what it was given stays apart",
    );
    assert.deepEqual(agent.agent.identity.controller?.learned, [address(a), address(b)].sort());
    assert.equal(agent.agent.link.controllerAddress, address(a), "it stays where it is");
  });

  it("finds a controller started after it joined, and fails over to the learned ones", async () => {
    const c = await ha.add("ctl-c");
    await eventually(
      async () => (agent.agent.link.controllerAddresses.includes(address(c)) ? true : undefined),
      20_000,
      "C learned",
    );
    await a.close();
    const landed = await eventually(
      async () => {
        const now = agent.agent.link.controllerAddress;
        return now !== address(a) && agent.agent.link.state.value === "CONNECTED" ? now : undefined;
      },
      20_000,
      "the agent on another controller",
    );
    assert.ok([address(b), address(c)].includes(landed as string), `landed on ${landed}`);
    const statusOn = async (controller: TestController) =>
      (await plaintextClient(NodesService, controller.bridgePort).getNode({ node: "learner" })).node?.status;
    // Heartbeats reach the survivors: the node is ready there (and stays so past a suspect period).
    await eventually(async () => ((await statusOn(b)) === NodeStatus.READY ? true : undefined), 15_000);
    await new Promise((resolve) => setTimeout(resolve, 4_000));
    assert.equal(await statusOn(b), NodeStatus.READY);
    assert.equal(await statusOn(c), NodeStatus.READY);
    // A's lease is gone: the cluster no longer names it, but the agent keeps what it was given.
    await eventually(
      async () =>
        agent.agent.identity.controller?.learned?.includes(address(a)) === false ? true : undefined,
      20_000,
      "A no longer advertised",
    );
    assert.deepEqual(agent.agent.link.controllerAddresses, [address(a), ...[address(b), address(c)].sort()]);
  });
});
