import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { Code, ConnectError } from "@connectrpc/connect";
import { ControlPlane as CartControlPlane } from "../../src/gen/control_plane_pb.ts";
import { ClusterService } from "../../src/gen/corral/v1/cluster_pb.ts";
import { NodeEventType, NodeStatus, NodesService } from "../../src/gen/corral/v1/nodes_pb.ts";
import { NodeService as HubNodeService } from "../../src/gen/hub_node_pb.ts";
import { HubServerService } from "../../src/gen/hub_server_pb.ts";
import { DiscoveryService, NodeService, TUIService } from "../../src/gen/node_pb.ts";
import { ControlPlane as PiControlPlane } from "../../src/gen/picontroller_pb.ts";
import { plaintextClient } from "../helpers/clients.ts";
import { startTestController, type TestController } from "../helpers/controller.ts";

const codeOf = (error: unknown) => (error instanceof ConnectError ? error.code : undefined);

describe("controller over the loopback bridge", () => {
  let cluster: TestController;

  before(async () => {
    // The controller's own node holds no model layers here: the layer figures below are the agents'.
    cluster = await startTestController({ node: { name: "My Controller", maxLayers: 0 } });
    const registry = cluster.controller.context.registry;
    await registry.register({
      name: "agent-1",
      address: "10.0.0.11:7444",
      status: "ready",
      services: ["PIPELINES", "LOGGING"],
      metadata: {
        type: { kind: "string", value: "my-type" },
        zeros: { kind: "bytes", value: new Uint8Array(10) },
      },
      resources: {
        cpuCores: 8,
        memoryMb: 16_000,
        maxLayers: 40,
        usedLayers: 10,
        gpus: [{ name: "A100", memoryMb: 40_000, uuid: "GPU-1" }],
      },
    });
    await registry.register({
      name: "agent-2",
      address: "10.0.0.12:7444",
      status: "suspect",
      metadata: { type: { kind: "bytes", value: new TextEncoder().encode("my-type") } },
      resources: { cpuCores: 2, memoryMb: 2_000, maxLayers: 10 },
    });
  });
  after(() => cluster.close());

  it("lists nodes with filters and gets one by name or id", async () => {
    const client = plaintextClient(NodesService, cluster.bridgePort);
    const all = await client.listNodes({});
    assert.deepEqual(all.nodes.map((n) => n.name).sort(), ["My Controller", "agent-1", "agent-2"]);
    assert.ok(all.revision > 0n);
    const ready = await client.listNodes({ filter: { statuses: [NodeStatus.READY] } });
    assert.deepEqual(ready.nodes.map((n) => n.name).sort(), ["My Controller", "agent-1"]);
    const byName = await client.getNode({ node: "agent-1" });
    assert.equal(byName.node?.resources?.cpuCores, 8);
    const byId = await client.getNode({ node: byName.node?.id ?? "" });
    assert.equal(byId.node?.name, "agent-1");
    await assert.rejects(client.getNode({ node: "agent-9" }), (e) => codeOf(e) === Code.NotFound);
    await assert.rejects(client.getNode({ node: " " }), (e) => codeOf(e) === Code.InvalidArgument);
  });

  it("watches nodes: the current ones, a sync marker, then changes as they happen", async () => {
    const client = plaintextClient(NodesService, cluster.bridgePort);
    const abort = new AbortController();
    const seen: string[] = [];
    const stream = client.watchNodes({ filter: { nameContains: "watch" } }, { signal: abort.signal });
    const registry = cluster.controller.context.registry;
    await registry.register({ name: "watch-a", status: "pending" });
    let lastRevision = 0n;
    try {
      for await (const event of stream) {
        seen.push(
          `${NodeEventType[event.type]}:${event.node?.name ?? ""}:${event.node ? NodeStatus[event.node.status] : ""}`,
        );
        assert.ok(event.revision >= lastRevision, "revisions never go back");
        lastRevision = event.revision;
        if (event.type === NodeEventType.SYNCED) await registry.setStatus("watch-a", "ready");
        if (event.type === NodeEventType.PUT && event.node?.status === NodeStatus.READY)
          await registry.remove("watch-a");
        if (event.type === NodeEventType.DELETED) break;
      }
    } finally {
      abort.abort();
    }
    assert.deepEqual(seen, [
      "SNAPSHOT:watch-a:PENDING",
      "SYNCED::",
      "PUT:watch-a:READY",
      "DELETED:watch-a:READY",
    ]);
  });

  it("answers Distributed LLM calls with the document's codes, addressing nodes by name", async () => {
    const nodes = plaintextClient(NodeService, cluster.bridgePort);
    // NodeInfo.node_id is the node's lasting id; calls take the id or the name.
    const idOf = async (name: string) => (await cluster.controller.context.registry.get(name)).id;
    const info = await nodes.getNodeInfo({ nodeId: "agent-1" });
    assert.equal(info.success, true);
    assert.equal(info.node?.nodeId, await idOf("agent-1"));
    assert.equal(info.node?.status, "ready");
    assert.equal(info.node?.resources?.gpus[0]?.name, "A100");
    await assert.rejects(nodes.getNodeInfo({ nodeId: "" }), (e) => codeOf(e) === Code.InvalidArgument);
    await assert.rejects(nodes.getNodeInfo({ nodeId: "no-such-node" }), (e) => codeOf(e) === Code.NotFound);
    const peers = await nodes.getPeers({ requesterId: "agent-1", includeSelf: false });
    assert.equal(peers.totalCount, peers.peers.length);
    const agent1 = await idOf("agent-1");
    assert.ok(!peers.peers.some((p) => p.nodeId === agent1));
    const withSelf = await nodes.getPeers({ requesterId: "agent-1", includeSelf: true });
    assert.equal(withSelf.totalCount, peers.totalCount + 1);

    const discovery = plaintextClient(DiscoveryService, cluster.bridgePort);
    const found = await discovery.discoverNodes({
      requesterId: "tui-client-1",
      knownNodes: ["agent-2"],
      filter: { minGpus: 1 },
    });
    assert.deepEqual(
      found.discoveredNodes.map((n) => n.nodeId),
      [await idOf("agent-1")],
    );
    await assert.rejects(
      discovery.discoverNodes({ filter: { minCpuCores: -1n } }),
      (e) => codeOf(e) === Code.InvalidArgument,
    );
    const info1 = await discovery.getClusterInfo({});
    const info2 = await discovery.getClusterInfo({});
    assert.equal(info1.clusterId, info2.clusterId);
    assert.ok(info1.clusterId.length > 0);
    assert.equal(info1.metrics?.totalLayers, 50);
    assert.equal(info1.metrics?.allocatedLayers, 10);
    assert.equal(info1.metrics?.healthyNodes, 2);
    assert.ok(Math.abs((info1.metrics?.clusterUtilization ?? 0) - 0.2) < 1e-6);

    const tui = plaintextClient(TUIService, cluster.bridgePort);
    const list = await tui.getNodeList({ includeMetrics: true, filter: { statuses: ["suspect"] } });
    assert.deepEqual(
      list.nodes.map((n) => n.nodeId),
      [await idOf("agent-2")],
    );
    assert.equal(list.clusterMetrics?.totalNodes, 3);
    await assert.rejects(
      tui.getNodeList({ filter: { statuses: ["sleepy"] } }),
      (e) => codeOf(e) === Code.InvalidArgument,
    );
  });

  it("filters NanoPing nodes by typed metadata and services, the hub's own node first", async () => {
    const hub = plaintextClient(HubServerService, cluster.bridgePort);
    const all = await hub.getNodes({});
    assert.equal(all.nodes[0]?.name, "My Controller");
    const typed = await hub.getNodes({
      metadataFilters: { type: { value: { case: "stringValue", value: "my-type" } } },
    });
    // agent-2 has the same text as bytes: a different oneof type never matches.
    assert.deepEqual(
      typed.nodes.map((n) => n.name),
      ["agent-1"],
    );
    const pipelines = await hub.getNodes({ serviceFilters: [HubNodeService.PIPELINES] });
    // The controller's own node runs pipelines too (NanoPing's guide lists "My Controller").
    assert.deepEqual(
      pipelines.nodes.map((n) => n.name),
      ["My Controller", "agent-1"],
    );
    const agent1 = typed.nodes[0];
    assert.equal(agent1?.online, true);
    const zeros = agent1?.metadata?.items.zeros?.value;
    assert.equal(zeros?.case, "bytesValue");
    assert.deepEqual(zeros?.value, new Uint8Array(10));
  });

  it("answers go-cart-actor Ping and Pi-Controller SyncClusterState", async () => {
    const cart = plaintextClient(CartControlPlane, cluster.bridgePort);
    const before = Math.floor(Date.now() / 1000);
    const pong = await cart.ping({});
    assert.equal(pong.host, `127.0.0.1:${cluster.clusterPort}`);
    assert.ok(Number(pong.unixTime) >= before && Number(pong.unixTime) <= before + 5);

    const pi = plaintextClient(PiControlPlane, cluster.bridgePort);
    const state = await pi.syncClusterState({ requesterId: "replica-2" });
    const status = await plaintextClient(ClusterService, cluster.bridgePort).getClusterStatus({});
    assert.equal(state.clusterId, status.clusterId);
    assert.equal(state.nodes.length, status.nodes?.total);
    assert.ok(state.revision <= status.revision);
    await assert.rejects(
      pi.syncClusterState({ sinceRevision: -1n }),
      (e) => codeOf(e) === Code.InvalidArgument,
    );
  });
});
