import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import type { Client } from "@connectrpc/connect";
import { HubClientService } from "../../src/gen/hub_client_pb.ts";
import { DiscoveryService, NodeService } from "../../src/gen/node_pb.ts";
import { eventually, joinWithToken, startTestAgent, type TestAgent } from "../helpers/agent.ts";
import { plaintextClient } from "../helpers/clients.ts";
import { startTestController, type TestController } from "../helpers/controller.ts";

/** Distributed LLM's meanings on a real controller and a real joined agent. */
describe("Distributed LLM: available memory is free memory; node_id lasts a node's life", () => {
  let cluster: TestController;
  let agent: TestAgent;
  let nodeApi: Client<typeof NodeService>;
  let discovery: Client<typeof DiscoveryService>;

  before(async () => {
    cluster = await startTestController({ node: { name: "My Controller" } });
    agent = await startTestAgent({ name: "agent-1" });
    await joinWithToken(cluster, agent);
    nodeApi = plaintextClient(NodeService, cluster.bridgePort);
    discovery = plaintextClient(DiscoveryService, cluster.bridgePort);
    // Both nodes have sent a load: the agent with its heartbeat, the controller from its own sampler.
    await eventually(
      async () => {
        const answers = await Promise.all(
          ["agent-1", "My Controller"].map((nodeId) =>
            nodeApi.getMetrics({ nodeId, metricNames: ["memory_used_mb"] }),
          ),
        );
        return answers.every((answer) => answer.metrics[0]?.error === "") ? true : undefined;
      },
      15_000,
      "a load from both nodes",
    );
  });
  after(async () => {
    await agent?.close();
    await cluster?.close();
  });

  it("GetClusterInfo.available_memory_mb is the ready nodes' memory less what is in use", async () => {
    const { metrics, nodes } = await discovery.getClusterInfo({});
    assert.equal(metrics?.healthyNodes, 2);
    const total = Number(metrics?.totalMemoryMb ?? 0n);
    const available = Number(metrics?.availableMemoryMb ?? 0n);
    assert.equal(
      total,
      nodes.reduce((sum, node) => sum + Number(node.resources?.memoryMb ?? 0n), 0),
    );
    // Both nodes run on this machine: each has memory in use, so less than all of it is free.
    assert.ok(available > 0, `available ${available}`);
    assert.ok(available < total, `available ${available} of ${total}`);
    // Bounded by the readings around it (memory in use moves a little between calls).
    let usedNow = 0;
    for (const node of nodes) {
      const answer = await nodeApi.getMetrics({ nodeId: node.nodeId, metricNames: ["memory_used_mb"] });
      usedNow += answer.metrics[0]?.value ?? 0;
    }
    const slack = total * 0.25;
    assert.ok(Math.abs(total - usedNow - available) < slack, `free ${total - usedNow} vs ${available}`);
  });

  it("node_id stays the node's id after a rename through NanoPing's setNode; names still find it", async () => {
    const before = (await nodeApi.getNodeInfo({ nodeId: "agent-1" })).node;
    const id = before?.nodeId ?? "";
    assert.equal(id, agent.agent.identity.nodeId, "node_id is the node's id");
    const peersBefore = await nodeApi.getPeers({ includeSelf: true });
    assert.ok(peersBefore.peers.some((peer) => peer.nodeId === id));

    const hub = plaintextClient(HubClientService, agent.localPort);
    const renamed = await hub.setNode({ nodeId: id, name: "gpu-box-7" });
    assert.equal(renamed.node?.name, "gpu-box-7");

    // What a client already holds still finds the node, and reads back the same id.
    assert.equal((await nodeApi.getNodeInfo({ nodeId: id })).node?.nodeId, id);
    assert.equal((await nodeApi.getNodeInfo({ nodeId: "gpu-box-7" })).node?.nodeId, id);
    const peers = await nodeApi.getPeers({ includeSelf: true });
    assert.ok(peers.peers.some((peer) => peer.nodeId === id));
    const metrics = await nodeApi.getMetrics({ nodeId: id, metricNames: ["max_layers"] });
    assert.equal(metrics.metrics[0]?.labels.node_id, id);
    const info = await discovery.getClusterInfo({});
    assert.ok(info.nodes.some((node) => node.nodeId === id));
  });

  it("a node registered through RegisterWithCluster has the node_id it chose, by id and by name", async () => {
    const joined = await discovery.registerWithCluster({
      nodeId: "worker-5",
      address: "127.0.0.1",
      port: 7005,
      resources: { cpuCores: 4n, memoryMb: 8_192n, maxLayers: 16 },
    });
    assert.equal(joined.success, true);
    assert.equal((await nodeApi.getNodeInfo({ nodeId: "worker-5" })).node?.nodeId, "worker-5");
    const peers = await nodeApi.getPeers({ requesterId: "worker-5" });
    assert.ok(
      peers.peers.every((peer) => peer.nodeId !== "worker-5"),
      "requester_id matches the id",
    );
    // Left and registered again: the same id, not a second record that would shadow the name.
    await discovery.leaveCluster({ nodeId: "worker-5" });
    await discovery.registerWithCluster({ nodeId: "worker-5", address: "127.0.0.1", port: 7005 });
    const again = (await nodeApi.getNodeInfo({ nodeId: "worker-5" })).node;
    assert.deepEqual([again?.nodeId, again?.status], ["worker-5", "ready"]);
  });
});
