import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { fileURLToPath } from "node:url";
import type { ClusterEvent } from "../../src/core/events/cluster-event.ts";
import { ModelsService, PlacementState } from "../../src/gen/corral/v1/models_pb.ts";
import { NodeService } from "../../src/gen/node_pb.ts";
import { eventually } from "../helpers/agent.ts";
import { plaintextClient } from "../helpers/clients.ts";
import { startTestController, type TestController } from "../helpers/controller.ts";
import { type AgentProcess, CorralProcesses, startAgentProcess } from "../helpers/corral-processes.ts";

/**
 * A demo-shaped cluster: a real controller (short liveness) and agent-1 … agent-3 as real `corral up`
 * processes that joined by token. The document's examples run against it from Python; then one agent
 * is killed with SIGKILL and its model layers must be re-placed once — and only once — it is `down`.
 */

const python = "/usr/bin/python3";
const script = fileURLToPath(new URL("./dllm_examples.py", import.meta.url));
const canRunPython = await new Promise<boolean>((resolve) =>
  execFile(python, ["-c", "import grpc, google.protobuf"], { timeout: 20_000 }, (error) =>
    resolve(error === null),
  ),
);

function runPython(
  args: readonly string[],
): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(
      python,
      [script, ...args],
      { timeout: 90_000, killSignal: "SIGKILL" },
      (error, stdout, stderr) => {
        resolve({
          code: error === null ? 0 : typeof error.code === "number" ? error.code : null,
          stdout,
          stderr,
        });
      },
    );
  });
}

interface Summary {
  ok: boolean;
  failures: string[];
  GetNodeInfo: {
    success: boolean;
    node: { node_id: string; status: string; resources: { max_layers: number } };
  };
  DiscoverNodes: { success: boolean; discovered_nodes: { node_id: string }[] };
  GetPeers: { total_count: number };
  GetMetrics: { success?: boolean; metrics: { name: string; value?: number; error?: string }[] };
  GetClusterInfo: {
    cluster_id: string;
    models: { name: string; node_assignments: string[] }[];
    metrics: { allocated_layers: number };
  };
  GetNodeList: { nodes: unknown[]; cluster_metrics: { total_nodes: number } };
  GetModelList: { models: { name: string; layer_count: number; node_assignments: string[] }[] };
  ExecuteCommand: {
    help: { success: boolean; output: string };
    unknown: { success?: boolean; error: string; exit_code: number };
  };
  StreamUpdates: { update_type: string }[];
  StreamMetrics: { metrics: { name: string }[] }[];
  codes: Record<string, { code: string; details?: string }>;
}

describe("a demo-shaped cluster: the document's examples, and a killed node's layers", {
  timeout: 180_000,
}, () => {
  const processes = new CorralProcesses();
  let root: string;
  let cluster: TestController;
  const agents = new Map<string, AgentProcess>();

  before(async () => {
    root = await mkdtemp(join(tmpdir(), "corral-dllm-demo-"));
    cluster = await startTestController({
      node: { name: "My Controller" },
      liveness: { minInterval: "200ms", downAfter: "800ms" },
    });
    const { token } = await cluster.controller.context.tokens.create({
      role: "node",
      ttlMs: 600_000,
      uses: 0,
      description: "demo agents",
      createdBy: "test",
      caFingerprint: cluster.controller.ca.fingerprint,
    });
    const controller = `127.0.0.1:${cluster.clusterPort}`;
    await Promise.all(
      ["agent-1", "agent-2", "agent-3"].map(async (name) => {
        const agent = await startAgentProcess(processes, join(root, name), [
          "--name",
          name,
          "--join",
          controller,
          "--token",
          token,
        ]);
        agents.set(name, agent);
      }),
    );
    const registry = cluster.controller.context.registry;
    await eventually(
      async () => {
        const { nodes } = await registry.list();
        const ready = nodes.filter(
          (n) => n.role === "agent" && n.status === "ready" && n.resources.maxLayers > 0,
        );
        return ready.length === 3 ? true : undefined;
      },
      30_000,
      "three ready agents with resources",
    );
  });

  after(async () => {
    await processes.killAll();
    await cluster?.close();
    if (root !== undefined) await rm(root, { recursive: true, force: true });
  });

  it("runs the document's examples from Python (reflection, gzip channel) as printed", {
    skip: canRunPython ? false : `${python} cannot import grpc (install python3-grpcio and python3-protobuf)`,
  }, async () => {
    await plaintextClient(ModelsService, cluster.bridgePort).addModel({
      name: "tinyllama",
      version: "1.1",
      layerCount: 22,
      sizeBytes: 2_200_000_000n,
      assign: true,
    });
    const result = await runPython([`127.0.0.1:${cluster.bridgePort}`, "--node-id", "agent-1"]);
    const [first = "", ...rest] = result.stdout.split("\n");
    let summary: Summary;
    try {
      summary = JSON.parse(rest.join("\n")) as Summary;
    } catch {
      assert.fail(`no JSON summary (exit ${result.code}):\n${result.stdout}\n${result.stderr}`);
    }
    assert.equal(result.code, 0, `${result.stderr}\n${JSON.stringify(summary.failures)}`);
    // The document's Python example, asked by name; node_id is the node's lasting id.
    const { registry } = cluster.controller.context;
    const idOf = async (name: string) => (await registry.get(name)).id;
    assert.equal(first, `Node: ${await idOf("agent-1")}, Status: ready`);
    assert.equal(summary.GetNodeInfo.success, true);
    assert.ok(summary.GetNodeInfo.node.resources.max_layers > 0);
    assert.equal(summary.DiscoverNodes.success, true);
    assert.deepEqual(
      summary.DiscoverNodes.discovered_nodes.map((n) => n.node_id).sort(),
      (await Promise.all(["My Controller", "agent-1", "agent-2", "agent-3"].map(idOf))).sort(),
    );
    assert.equal(summary.GetPeers.total_count, 4);
    assert.deepEqual(
      summary.GetMetrics.metrics.map((m) => m.name),
      ["max_layers", "used_layers", "bogus"],
    );
    assert.match(summary.GetMetrics.metrics[2]?.error ?? "", /unknown metric "bogus"/);
    assert.equal(summary.GetClusterInfo.cluster_id, cluster.controller.context.facts.clusterId);
    assert.equal(summary.GetClusterInfo.metrics.allocated_layers, 22);
    assert.equal(summary.GetModelList.models[0]?.name, "tinyllama");
    assert.equal(summary.GetModelList.models[0]?.layer_count, 22);
    assert.equal(summary.GetModelList.models[0]?.node_assignments.length, 1);
    assert.equal(summary.GetNodeList.cluster_metrics.total_nodes, 4);
    assert.match(summary.ExecuteCommand.help.output, /assign <model>/);
    assert.equal(summary.ExecuteCommand.unknown.exit_code, 127);
    assert.match(summary.ExecuteCommand.unknown.error, /unknown command "reboot"/);
    assert.deepEqual(summary.StreamUpdates.map((u) => u.update_type).sort(), ["metrics", "models", "nodes"]);
    assert.equal(summary.StreamMetrics.length, 2);
    assert.deepEqual(summary.codes, {
      GetNodeInfo_empty: { code: "INVALID_ARGUMENT", details: "node_id: is empty; give a node id or name" },
      GetNodeInfo_unknown: {
        code: "NOT_FOUND",
        details: 'node "no-such-node" not found (looked up by id and by name)',
      },
      StreamMetrics_interval: {
        code: "INVALID_ARGUMENT",
        details: "interval_seconds: must be 1 to 3600 seconds (0 for the default, 5), got -5",
      },
    });
    await plaintextClient(ModelsService, cluster.bridgePort).removeModel({ model: "tinyllama" });
  });

  it("GetMetrics shows the load real agents read when asked", async () => {
    const nodeApi = plaintextClient(NodeService, cluster.bridgePort);
    const metrics = await eventually(
      async () => {
        const answer = await nodeApi.getMetrics({
          nodeId: "agent-2",
          metricNames: ["cpu_usage", "memory_used_mb", "memory_usage"],
        });
        return answer.metrics.every((m) => m.error === "") ? answer.metrics : undefined;
      },
      10_000,
      "a reading with load",
    );
    const [cpu, memory, share] = metrics;
    assert.ok(cpu !== undefined && cpu.value >= 0 && cpu.value <= 100, `cpu_usage ${cpu?.value}`);
    assert.ok(memory !== undefined && memory.value > 0, `memory_used_mb ${memory?.value}`);
    assert.ok(share !== undefined && share.value > 0 && share.value <= 100, `memory_usage ${share?.value}`);
    assert.equal(cpu.labels.source, "node", "read from the agent for this answer");
    assert.ok(Math.abs(Number(cpu.timestamp) - Date.now() / 1000) < 10, "the sample is recent");
  });

  it("re-places a SIGKILLed node's layers after it is marked down, not before", async () => {
    const { registry, feed } = cluster.controller.context;
    const models = plaintextClient(ModelsService, cluster.bridgePort);
    const maxLayers = (await registry.get("agent-1")).resources.maxLayers;
    // Bigger than one agent: it spans two, and the third has room for what the killed one held.
    const layerCount = maxLayers + Math.ceil(maxLayers / 2);
    const placed = await models.addModel({ name: "spread", layerCount, assign: true });
    assert.equal(placed.model?.state, PlacementState.PLACED, placed.model?.message);
    assert.equal(placed.model?.assignments.length, 2);
    // The controller's node takes layers like any node: the victim is an agent holding some.
    const victimRange = placed.model?.assignments.find((range) => agents.has(range.nodeName));
    const victimName = victimRange?.nodeName ?? "";
    const victim = await registry.get(victimName);
    const held = victimRange?.count ?? 0;

    const events: ClusterEvent[] = [];
    const watching = new AbortController();
    const follow = (async () => {
      for await (const event of feed.watch({ kinds: ["node", "model"], signal: watching.signal }))
        events.push(event);
    })().catch(() => undefined);
    try {
      const stopped = await (agents.get(victimName) as AgentProcess).process.stop("SIGKILL");
      assert.equal(stopped.signal, "SIGKILL");
      const moved = await eventually(
        async () => {
          const model = (await models.getModel({ model: "spread" })).model;
          return model?.state === PlacementState.PLACED &&
            model.assignments.every((r) => r.nodeId !== victim.id)
            ? model
            : undefined;
        },
        20_000,
        "the layers to leave the killed node",
      );
      assert.equal(moved.placedLayers, layerCount);
      const statuses = events
        .filter((e) => e.kind === "node" && e.node?.id === victim.id)
        .map((e) => (e.kind === "node" ? `${e.node?.status}@${e.revision}` : ""));
      const downAt = events.find(
        (e) => e.kind === "node" && e.node?.id === victim.id && e.node.status === "down",
      )?.revision;
      assert.ok(downAt !== undefined, `the node was never marked down: ${statuses.join(", ")}`);
      assert.ok(
        events.some(
          (e) =>
            e.kind === "node" &&
            e.node?.id === victim.id &&
            e.node.status === "suspect" &&
            e.revision < downAt,
        ),
        "suspect first",
      );
      const firstMove = events.find(
        (e) =>
          e.kind === "model" &&
          e.model?.name === "spread" &&
          e.model.assignments.every((r) => r.nodeId !== victim.id),
      )?.revision;
      assert.ok(
        firstMove !== undefined && firstMove > downAt,
        `moved at ${firstMove}, marked down at ${downAt}: suspect nodes keep their layers`,
      );
      // Only what the killed node held moved; used_layers says the same as the assignments, everywhere.
      for (const kept of placed.model?.assignments.filter((range) => range !== victimRange) ?? []) {
        assert.ok(
          moved.assignments.some(
            (r) =>
              r.nodeId === kept.nodeId &&
              r.start <= kept.start &&
              r.start + r.count >= kept.start + kept.count,
          ),
          `the surviving range ${kept.nodeName} [${kept.start}+${kept.count}] stayed where it was`,
        );
      }
      const nodeApi = plaintextClient(NodeService, cluster.bridgePort);
      assert.equal((await nodeApi.getNodeInfo({ nodeId: victimName })).node?.resources?.usedLayers, 0);
      const perNode = new Map<string, number>();
      for (const r of moved.assignments) perNode.set(r.nodeName, (perNode.get(r.nodeName) ?? 0) + r.count);
      for (const [name, count] of perNode) {
        assert.equal((await nodeApi.getNodeInfo({ nodeId: name })).node?.resources?.usedLayers, count, name);
      }
      assert.ok(held > 0);
    } finally {
      watching.abort();
      await follow;
    }
  });
});
