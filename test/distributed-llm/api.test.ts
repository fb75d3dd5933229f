import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { type Client, Code, ConnectError, createClient } from "@connectrpc/connect";
import { compressionGzip, createGrpcTransport } from "@connectrpc/connect-node";
import { ModelEventType, ModelsService, PlacementState } from "../../src/gen/corral/v1/models_pb.ts";
import { NodesService } from "../../src/gen/corral/v1/nodes_pb.ts";
import {
  type ClusterUpdate,
  DiscoveryService,
  type MetricsStreamResponse,
  NodeService,
  TUIService,
} from "../../src/gen/node_pb.ts";
import { plaintextClient } from "../helpers/clients.ts";
import { startTestController, type TestController } from "../helpers/controller.ts";

const codeOf = (error: unknown) => (error instanceof ConnectError ? error.code : undefined);
const rejectsWithCode = (promise: Promise<unknown>, code: Code, pattern?: RegExp) =>
  assert.rejects(promise, (error: unknown) => {
    assert.equal(codeOf(error), code, String(error));
    if (pattern !== undefined) assert.match(String(error), pattern);
    return true;
  });

/** First `n` messages of a stream (bounded by a deadline), then the stream is cancelled. */
async function take<T>(stream: (signal: AbortSignal) => AsyncIterable<T>, n: number, timeoutMs = 10_000) {
  const stop = new AbortController();
  const deadline = setTimeout(() => stop.abort(), timeoutMs);
  const got: { at: number; message: T }[] = [];
  try {
    for await (const message of stream(stop.signal)) {
      got.push({ at: Date.now(), message });
      if (got.length >= n) break;
    }
  } catch (error) {
    if (!stop.signal.aborted) throw error;
  } finally {
    clearTimeout(deadline);
    stop.abort();
  }
  return got;
}

const resources = (maxLayers: number, gpus = 0) => ({
  cpuCores: 8n,
  memoryMb: 16_384n,
  maxLayers,
  usedLayers: 0,
  gpus: Array.from({ length: gpus }, (_, i) => ({ name: "A100", memoryMb: 40_960n, uuid: `GPU-${i}` })),
});

describe("Distributed LLM API against a real controller (gzip both ways)", () => {
  let cluster: TestController;
  let nodeApi: Client<typeof NodeService>;
  let discovery: Client<typeof DiscoveryService>;
  let tui: Client<typeof TUIService>;
  let models: Client<typeof ModelsService>;
  /** NodeInfo.node_id of the controller's node: its id (nodes registered here chose theirs, "agent-1"…). */
  let controllerId: string;

  before(async () => {
    // The nodes registered here never heartbeat: a long interval keeps them ready for the whole test.
    // The controller's own node holds no model layers here, so placement figures are the three nodes'.
    cluster = await startTestController({
      node: { name: "My Controller", maxLayers: 0 },
      liveness: { minInterval: "10m" },
    });
    controllerId = cluster.controller.context.facts.controllerNodeId;
    nodeApi = plaintextClient(NodeService, cluster.bridgePort);
    discovery = plaintextClient(DiscoveryService, cluster.bridgePort);
    tui = plaintextClient(TUIService, cluster.bridgePort);
    models = plaintextClient(ModelsService, cluster.bridgePort);
    for (const [name, maxLayers, gpus] of [
      ["agent-1", 24, 1],
      ["agent-2", 16, 0],
      ["agent-3", 16, 0],
    ] as const) {
      const joined = await discovery.registerWithCluster({
        nodeId: name,
        address: "127.0.0.1",
        port: 7000 + Number(name.slice(-1)),
        resources: resources(maxLayers, gpus),
      });
      assert.equal(joined.success, true);
    }
  });
  after(() => cluster?.close());

  it("GetNodeInfo {node_id: agent-1}, and the document's codes for bad and unknown ids", async () => {
    const answer = await nodeApi.getNodeInfo({ nodeId: "agent-1" });
    assert.equal(answer.success, true);
    assert.equal(answer.node?.nodeId, "agent-1");
    assert.equal(answer.node?.status, "ready");
    assert.equal(answer.node?.port, 7001);
    assert.equal(answer.node?.resources?.maxLayers, 24);
    assert.equal(answer.node?.resources?.gpus[0]?.name, "A100");
    await rejectsWithCode(nodeApi.getNodeInfo({ nodeId: "" }), Code.InvalidArgument);
    await rejectsWithCode(nodeApi.getNodeInfo({ nodeId: "agent-9" }), Code.NotFound);
  });

  it("GetPeers: include_self and total_count", async () => {
    const others = await nodeApi.getPeers({ requesterId: "agent-1" });
    assert.deepEqual(others.peers.map((p) => p.nodeId).sort(), [controllerId, "agent-2", "agent-3"].sort());
    assert.equal(others.totalCount, 3);
    const all = await nodeApi.getPeers({ requesterId: "agent-1", includeSelf: true });
    assert.equal(all.totalCount, 4);
  });

  it("DiscoverNodes {requester_id: tui-client-1, known_nodes: []}: everyone; known nodes and filters exclude", async () => {
    const all = await discovery.discoverNodes({ requesterId: "tui-client-1", knownNodes: [] });
    assert.equal(all.success, true);
    assert.deepEqual(
      all.discoveredNodes.map((n) => n.nodeId).sort(),
      [controllerId, "agent-1", "agent-2", "agent-3"].sort(),
    );
    const fresh = await discovery.discoverNodes({
      requesterId: "tui-client-1",
      knownNodes: ["agent-1", "My Controller"],
    });
    assert.deepEqual(fresh.discoveredNodes.map((n) => n.nodeId).sort(), ["agent-2", "agent-3"]);
    const gpu = await discovery.discoverNodes({ requesterId: "x", filter: { minGpus: 1 } });
    assert.deepEqual(
      gpu.discoveredNodes.map((n) => n.nodeId),
      ["agent-1"],
    );
    await rejectsWithCode(discovery.discoverNodes({ filter: { minFreeLayers: -1 } }), Code.InvalidArgument);
  });

  it("GetMetrics: the heartbeat's load and the resources, unknown names reported with an error", async () => {
    const node = await cluster.controller.context.registry.get("agent-2");
    cluster.controller.context.loads.record(node.id, { cpuUsage: 37.5, memoryUsedMb: 4096, at: Date.now() });
    const all = await nodeApi.getMetrics({ nodeId: "agent-2" });
    assert.equal(all.success, true);
    const value = (name: string) => all.metrics.find((m) => m.name === name);
    assert.equal(value("cpu_usage")?.value, 37.5);
    assert.equal(value("cpu_usage")?.unit, "percent");
    assert.equal(value("memory_used_mb")?.value, 4096);
    assert.equal(value("memory_usage")?.value, 25);
    assert.equal(value("cpu_cores")?.value, 8);
    assert.equal(value("max_layers")?.value, 16);
    assert.equal(value("free_layers")?.value, 16 - (value("used_layers")?.value ?? 0));
    assert.ok(all.timestamp > 1_600_000_000n && all.timestamp < 10_000_000_000n, "unix seconds");

    const some = await nodeApi.getMetrics({
      nodeId: "agent-2",
      metricNames: ["gpus", "no_such_metric", "cpu_usage"],
    });
    assert.deepEqual(
      some.metrics.map((m) => m.name),
      ["gpus", "no_such_metric", "cpu_usage"],
    );
    assert.equal(some.success, false);
    assert.match(some.metrics[1]?.error ?? "", /unknown metric "no_such_metric"; known: cpu_usage/);
    assert.equal(some.metrics[0]?.error, "");

    // A node that never sent a heartbeat has no load: said so, per metric, not invented.
    const silent = await nodeApi.getMetrics({ nodeId: "agent-3", metricNames: ["cpu_usage", "max_layers"] });
    assert.equal(silent.success, true);
    assert.match(silent.metrics[0]?.error ?? "", /no load reported/);
    assert.equal(silent.metrics[1]?.value, 16);
    // The controller measures itself.
    const own = await nodeApi.getMetrics({ nodeId: "My Controller", metricNames: ["cpu_usage"] });
    assert.equal(own.metrics[0]?.error, "");
    await rejectsWithCode(nodeApi.getMetrics({ nodeId: "" }), Code.InvalidArgument);
    await rejectsWithCode(nodeApi.getMetrics({ nodeId: "ghost" }), Code.NotFound);
  });

  it("StreamMetrics: honours interval_seconds (minimum 1 s), refuses bad intervals", async () => {
    const started = Date.now();
    const got = await take<MetricsStreamResponse>(
      (signal) =>
        nodeApi.streamMetrics(
          { nodeId: "agent-2", intervalSeconds: 1, metricNames: ["used_layers"] },
          { signal },
        ),
      3,
    );
    assert.equal(got.length, 3);
    assert.ok((got[0]?.at ?? 0) - started < 900, "the first sample comes at once");
    const gap = (got[2]?.at ?? 0) - (got[1]?.at ?? 0);
    assert.ok(gap >= 900 && gap < 1_900, `about 1 s between samples, got ${gap} ms`);
    assert.equal(got[0]?.message.metrics[0]?.name, "used_layers");
    for (const seconds of [-1, 3_601]) {
      await rejectsWithCode(
        (async () => {
          for await (const _ of nodeApi.streamMetrics({ nodeId: "agent-2", intervalSeconds: seconds })) break;
        })(),
        Code.InvalidArgument,
        /interval_seconds/,
      );
    }
  });

  it("RegisterWithCluster refreshes a member without resetting used_layers; the controller's name is refused", async () => {
    const again = await discovery.registerWithCluster({
      nodeId: "agent-3",
      address: "127.0.0.1:7103",
      resources: resources(16),
      seedNodes: ["127.0.0.1:8080"],
    });
    assert.equal(again.success, true);
    assert.match(again.message, /^refreshed agent-3 \(ready, 16 layers\)/);
    assert.match(again.message, /seed_nodes are not needed/);
    assert.ok(again.existingNodes.every((n) => n.nodeId !== "agent-3"));
    assert.equal(again.clusterId, cluster.controller.context.facts.clusterId);
    assert.equal((await nodeApi.getNodeInfo({ nodeId: "agent-3" })).node?.port, 7103);
    await rejectsWithCode(discovery.registerWithCluster({ nodeId: "My Controller" }), Code.InvalidArgument);
    await rejectsWithCode(discovery.registerWithCluster({ nodeId: "" }), Code.InvalidArgument);
    await rejectsWithCode(
      discovery.registerWithCluster({ nodeId: "neg", resources: { maxLayers: -3 } }),
      Code.InvalidArgument,
    );
  });

  it("RegisterWithCluster on the cluster listener: a stranger needs a join token in the metadata", async () => {
    const transport = createGrpcTransport({
      baseUrl: `https://127.0.0.1:${cluster.clusterPort}`,
      nodeOptions: { ca: cluster.controller.ca.certificatePem, servername: "localhost" },
      sendCompression: compressionGzip,
      acceptCompression: [compressionGzip],
    });
    const stranger = createClient(DiscoveryService, transport);
    await rejectsWithCode(
      stranger.registerWithCluster({
        nodeId: "tls-node",
        address: "127.0.0.1:7300",
        resources: resources(8),
      }),
      Code.Unauthenticated,
      /corral-join-token/,
    );
    const { token, record } = await cluster.controller.context.tokens.create({
      role: "node",
      ttlMs: 60_000,
      uses: 1,
      description: "dllm",
      createdBy: "test",
      caFingerprint: cluster.controller.ca.fingerprint,
    });
    const headers = { "corral-join-token": token };
    // An existing name is refused before the token is spent.
    await rejectsWithCode(
      stranger.registerWithCluster({ nodeId: "agent-1" }, { headers }),
      Code.AlreadyExists,
    );
    const joined = await stranger.registerWithCluster(
      { nodeId: "tls-node", address: "127.0.0.1:7300", resources: resources(8) },
      { headers },
    );
    assert.equal(joined.success, true);
    assert.equal((await nodeApi.getNodeInfo({ nodeId: "tls-node" })).node?.status, "ready");
    const spent = (await cluster.controller.context.tokens.list()).find((t) => t.id === record.id);
    assert.equal(spent?.usesLeft, 0);
    await rejectsWithCode(
      stranger.registerWithCluster({ nodeId: "tls-node-2", address: "127.0.0.1:7301" }, { headers }),
      Code.Unauthenticated,
      /no uses left/,
    );
    await discovery.leaveCluster({ nodeId: "tls-node", reason: "test done" });
  });

  it("models: placed by free capacity, shown in GetModelList, GetClusterInfo and used_layers", async () => {
    const added = await models.addModel({
      name: "llama-2-7b",
      version: "2",
      layerCount: 32,
      sizeBytes: 13_000_000_000n,
      filePath: "/models/llama-2-7b.gguf",
    });
    assert.equal(added.model?.state, PlacementState.UNASSIGNED);
    const assigned = await models.assignModel({ model: "llama-2-7b" });
    assert.equal(assigned.model?.state, PlacementState.PLACED);
    // GPU node first (24 layers), then one CPU node for the rest (agent-2 and agent-3 tie; ids decide).
    const second = assigned.model?.assignments[1]?.nodeName ?? "";
    const spare = second === "agent-2" ? "agent-3" : "agent-2";
    assert.deepEqual(
      assigned.model?.assignments.map((r) => [r.nodeName, r.start, r.count]),
      [
        ["agent-1", 0, 24],
        [second, 24, 8],
      ],
    );
    assert.ok(["agent-2", "agent-3"].includes(second));
    const list = await tui.getModelList({});
    assert.deepEqual(list.models[0]?.nodeAssignments, ["agent-1", second]);
    assert.equal(list.models[0]?.layerCount, 32);
    assert.equal(list.models[0]?.sizeBytes, 13_000_000_000n);
    assert.deepEqual((await tui.getModelList({ nodeId: spare })).models, []);
    assert.equal((await tui.getModelList({ nodeId: second })).models.length, 1);
    await rejectsWithCode(tui.getModelList({ nodeId: "ghost" }), Code.NotFound);

    const info = await discovery.getClusterInfo({});
    assert.equal(info.models.length, 1);
    assert.equal(info.metrics?.allocatedLayers, 32);
    assert.equal(info.metrics?.totalLayers, 24 + 16 + 16);
    assert.equal((await nodeApi.getNodeInfo({ nodeId: second })).node?.resources?.usedLayers, 8);
    // The native API shows the same used_layers: one truth.
    const native = await plaintextClient(NodesService, cluster.bridgePort).getNode({ node: "agent-1" });
    assert.equal(native.node?.resources?.usedLayers, 24);
    const ls = await tui.getNodeList({ includeMetrics: true, filter: { resources: { minFreeLayers: 10 } } });
    assert.deepEqual(
      ls.nodes.map((n) => n.nodeId),
      [spare],
    );
    assert.equal(ls.clusterMetrics?.allocatedLayers, 32);
  });

  it("StreamUpdates: everything at once, then a change is sent at once, not at the tick", async () => {
    const stop = new AbortController();
    const seen: { at: number; update: ClusterUpdate }[] = [];
    const stream = (async () => {
      for await (const update of tui.streamUpdates(
        { requesterId: "t", intervalSeconds: 60, updateTypes: ["models", "metrics"] },
        { signal: stop.signal },
      )) {
        seen.push({ at: Date.now(), update });
      }
    })().catch(() => undefined);
    try {
      const until = async (check: () => boolean, what: string) => {
        for (const deadline = Date.now() + 5_000; !check(); ) {
          if (Date.now() > deadline)
            throw new Error(`no ${what}; saw ${seen.map((s) => s.update.updateType).join(",")}`);
          await new Promise((resolve) => setTimeout(resolve, 20));
        }
      };
      await until(() => seen.length >= 2, "initial updates");
      assert.deepEqual(
        seen
          .slice(0, 2)
          .map((s) => s.update.updateType)
          .sort(),
        ["metrics", "models"],
      );
      const before = seen.length;
      const changedAt = Date.now();
      await models.addModel({ name: "mistral-7b", layerCount: 8, assign: true });
      await until(
        () =>
          seen
            .slice(before)
            .some(
              (s) =>
                s.update.updateType === "models" &&
                s.update.models.some((m) => m.name === "mistral-7b" && m.nodeAssignments.length > 0),
            ),
        "models update",
      );
      const models_ = seen.slice(before).find((s) => s.update.updateType === "models");
      assert.ok(
        (models_?.at ?? Infinity) - changedAt < 2_000,
        "sent on the change, well before the 60 s tick",
      );
      assert.ok(
        seen.slice(before).some((s) => s.update.updateType === "metrics"),
        "metrics follow node changes",
      );
      assert.ok(
        seen.every((s) => s.update.updateType !== "nodes"),
        "only the types asked for",
      );
    } finally {
      stop.abort();
      await stream;
    }
    await rejectsWithCode(
      (async () => {
        for await (const _ of tui.streamUpdates({ updateTypes: ["weather"] })) break;
      })(),
      Code.InvalidArgument,
      /update_types/,
    );
  });

  it("ExecuteCommand: named commands only; unknown → non-zero exit with error", async () => {
    const help = await tui.executeCommand({ command: "help" });
    assert.equal(help.exitCode, 0);
    for (const name of [
      "help",
      "status",
      "nodes",
      "models",
      "assign <model>",
      "unassign <model>",
      "drain <node>",
    ])
      assert.ok(help.output.includes(name), `help lists ${name}`);
    const nodes = await tui.executeCommand({ command: "nodes", options: { format: "json" } });
    const parsed = JSON.parse(nodes.output) as { node_id: string; used_layers: number }[];
    assert.equal(parsed.find((n) => n.node_id === "agent-1")?.used_layers, 24);
    const status = await tui.executeCommand({ command: "status" });
    assert.match(status.output, /^layers\s+\d+ of 56 in use/m);

    const unknown = await tui.executeCommand({ command: "rm -rf /" });
    assert.equal(unknown.success, false);
    assert.equal(unknown.exitCode, 127);
    assert.match(unknown.error, /unknown command "rm"/);
    const usage = await tui.executeCommand({ command: "assign" });
    assert.deepEqual([usage.success, usage.exitCode], [false, 2]);
    assert.match(usage.error, /usage: assign <model>/);
    const missing = await tui.executeCommand({ command: "assign", args: ["no-such-model"] });
    assert.deepEqual([missing.exitCode, missing.success], [1, false]);
    assert.match(missing.error, /model "no-such-model" not found/);
    const badOption = await tui.executeCommand({ command: "help", options: { format: "json" } });
    assert.equal(badOption.exitCode, 2);
    await rejectsWithCode(tui.executeCommand({ command: "  " }), Code.InvalidArgument);

    // unassign, then drain: agent-1's layers move to the room mistral-7b gave back.
    const unassigned = await tui.executeCommand({ command: "unassign", args: ["mistral-7b"] });
    assert.match(unassigned.output, /mistral-7b: not assigned/);
    const drained = await tui.executeCommand({ command: "drain agent-1" });
    assert.equal(drained.exitCode, 0, drained.error);
    assert.match(drained.output, /^agent-1 is drained: 24 of its 24 model layers moved to other nodes$/m);
    assert.equal((await nodeApi.getNodeInfo({ nodeId: "agent-1" })).node?.resources?.usedLayers, 0);
    const undrained = await tui.executeCommand({ command: "undrain", args: ["agent-1"] });
    assert.equal(undrained.exitCode, 0, undrained.error);
    // Short of room, a drain says which model is now partially placed.
    await models.assignModel({ model: "mistral-7b" });
    assert.deepEqual(
      (await models.getModel({ model: "mistral-7b" })).model?.assignments.map((r) => r.nodeName),
      ["agent-1"],
    );
    const short = await tui.executeCommand({ command: "drain agent-1" });
    assert.match(
      short.output,
      /^agent-1 is drained: 0 of its 8 model layers moved to other nodes; mistral-7b is unplaced \(not placed: none of its 8 layers found free capacity on a ready node\)$/m,
    );
    await tui.executeCommand({ command: "undrain agent-1" });
    assert.equal(
      (await models.getModel({ model: "mistral-7b" })).model?.state,
      PlacementState.PLACED,
      "undrained room is used at once",
    );
    await models.unassignModel({ model: "mistral-7b" });
    const modelsOut = await tui.executeCommand({ command: "models" });
    assert.match(modelsOut.output, /^llama-2-7b\s+2\s+32\/32\s+placed\s+/m);
  });

  it("LeaveCluster: the node's layers move first, then it is left; its metrics stream ends", async () => {
    const before = await models.getModel({ model: "llama-2-7b" });
    const holder = before.model?.assignments[0]?.nodeName ?? "";
    assert.notEqual(holder, "");
    const stream = (async () => {
      const got: MetricsStreamResponse[] = [];
      for await (const message of nodeApi.streamMetrics(
        { nodeId: holder, intervalSeconds: 1 },
        { signal: AbortSignal.timeout(15_000) },
      ))
        got.push(message);
      return got;
    })();
    await new Promise((resolve) => setTimeout(resolve, 300));
    const left = await discovery.leaveCluster({ nodeId: holder, reason: "maintenance" });
    assert.equal(left.success, true);
    assert.match(
      left.message,
      new RegExp(
        `^${holder} left the cluster \\(maintenance\\); \\d+ of its \\d+ model layers moved to other nodes`,
      ),
    );
    const got = await stream;
    assert.ok(got.length >= 1, "the stream sent before it ended");
    const after = await models.getModel({ model: "llama-2-7b" });
    assert.ok(after.model?.assignments.every((r) => r.nodeName !== holder));
    assert.equal(after.model?.placedLayers, 32);
    const info = await nodeApi.getNodeInfo({ nodeId: holder });
    assert.equal(info.node?.status, "left");
    assert.equal(info.node?.resources?.usedLayers, 0);
    assert.ok((await nodeApi.getPeers({ includeSelf: true })).peers.every((p) => p.nodeId !== holder));
    const again = await discovery.leaveCluster({ nodeId: holder });
    assert.match(again.message, /had already left/);
    await rejectsWithCode(discovery.leaveCluster({ nodeId: "My Controller" }), Code.FailedPrecondition);
    await rejectsWithCode(discovery.leaveCluster({ nodeId: "nobody" }), Code.NotFound);
    await rejectsWithCode(nodeApi.getMetrics({ nodeId: holder }), Code.NotFound, /left the cluster/);
  });

  it("WatchModels (native): the current models, SYNCED, then every change", async () => {
    const stop = new AbortController();
    const seen: { type: ModelEventType; name: string; state: PlacementState }[] = [];
    const watching = (async () => {
      for await (const event of models.watchModels({}, { signal: stop.signal }))
        seen.push({ type: event.type, name: event.model?.name ?? "", state: event.model?.state ?? 0 });
    })().catch(() => undefined);
    try {
      const until = async (check: () => boolean) => {
        for (const deadline = Date.now() + 5_000; !check(); await new Promise((r) => setTimeout(r, 20)))
          if (Date.now() > deadline) throw new Error(`saw ${JSON.stringify(seen)}`);
      };
      await until(() => seen.some((e) => e.type === ModelEventType.SYNCED));
      assert.ok(seen.some((e) => e.type === ModelEventType.SNAPSHOT && e.name === "llama-2-7b"));
      await models.addModel({ name: "phi-2", layerCount: 4, assign: true });
      await until(() =>
        seen.some(
          (e) => e.type === ModelEventType.PUT && e.name === "phi-2" && e.state === PlacementState.PLACED,
        ),
      );
      await models.removeModel({ model: "phi-2" });
      await until(() => seen.some((e) => e.type === ModelEventType.DELETED && e.name === "phi-2"));
    } finally {
      stop.abort();
      await watching;
    }
  });

  it("GetClusterInfo: the cluster id is the same after a restart", async () => {
    const before = await discovery.getClusterInfo({});
    cluster = await cluster.restart();
    const after = await plaintextClient(DiscoveryService, cluster.bridgePort).getClusterInfo({});
    assert.equal(after.clusterId, before.clusterId);
    assert.deepEqual(after.models.map((m) => m.name).sort(), before.models.map((m) => m.name).sort());
  });
});
