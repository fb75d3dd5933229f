import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { Code, ConnectError } from "@connectrpc/connect";
import { NodeService, TUIService } from "../../src/gen/node_pb.ts";
import { joinWithToken, startTestAgent, type TestAgent } from "../helpers/agent.ts";
import { plaintextClient } from "../helpers/clients.ts";
import { startTestController, type TestController } from "../helpers/controller.ts";

describe("Distributed LLM services on an agent's local API, forwarded to the controller", () => {
  let cluster: TestController;
  let node: TestAgent;
  before(async () => {
    cluster = await startTestController({ node: { name: "My Controller" } });
    node = await startTestAgent({ name: "llm-1" });
  });
  after(async () => {
    await node.close();
    await cluster.close();
  });

  it("answers UNAVAILABLE before the node has joined, and the controller's answers after", async () => {
    const local = plaintextClient(NodeService, node.localPort);
    await assert.rejects(
      local.getNodeInfo({ nodeId: "My Controller" }),
      (e: unknown) => e instanceof ConnectError && e.code === Code.Unavailable,
    );
    await joinWithToken(cluster, node);
    // NodeInfo.node_id is the node's lasting id; the call takes the name too.
    const info = await local.getNodeInfo({ nodeId: "llm-1" });
    assert.equal(info.node?.nodeId, node.agent.identity.nodeId);
    assert.equal(info.node?.status, "ready");
    const peers = await local.getPeers({ requesterId: "llm-1", includeSelf: true });
    assert.deepEqual(
      peers.peers.map((p) => p.nodeId).sort(),
      [cluster.controller.context.facts.controllerNodeId, node.agent.identity.nodeId].sort(),
    );
    await assert.rejects(
      local.getNodeInfo({ nodeId: "nobody" }),
      (e: unknown) => e instanceof ConnectError && e.code === Code.NotFound,
    );
    const list = await plaintextClient(TUIService, node.localPort).getNodeList({ includeMetrics: true });
    assert.equal(list.clusterMetrics?.totalNodes, 2);
  });
});
