import assert from "node:assert/strict";
import { chmod, mkdtemp, rm, writeFile } from "node:fs/promises";
import os from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import type { Client } from "@connectrpc/connect";
import { totalMemoryMb } from "../../src/agent/machine/system-resources.ts";
import { maxLayersFor } from "../../src/core/nodes/node-capacity.ts";
import { ModelsService } from "../../src/gen/corral/v1/models_pb.ts";
import { DiscoveryService, NodeService } from "../../src/gen/node_pb.ts";
import { eventually } from "../helpers/agent.ts";
import { plaintextClient } from "../helpers/clients.ts";
import { startTestController, type TestController } from "../helpers/controller.ts";

/**
 * A fake nvidia-smi on the controller's machine: it answers the discovery query (name, memory, uuid) and
 * the metrics query (uuid, name, utilization, memory used, memory total, temperature) with `gpus`.
 */
async function writeFakeNvidiaSmi(path: string, gpus: readonly { name: string; mb: number; uuid: string }[]) {
  const discovery = gpus.map((g) => `${g.name}, ${g.mb}, ${g.uuid}`).join("\\n");
  const metrics = gpus.map((g) => `${g.uuid}, ${g.name}, 7, 1024, ${g.mb}, 40`).join("\\n");
  await writeFile(
    path,
    `#!/bin/sh\ncase "$1" in\n  --query-gpu=name,*) printf '${discovery}\\n' ;;\n  *) printf '${metrics}\\n' ;;\nesac\n`,
  );
  await chmod(path, 0o755);
}

const h100 = { name: "NVIDIA H100 80GB HBM3", mb: 81_559, uuid: "GPU-0d6d1f4e-0000-4000-8000-000000000001" };
const l4 = { name: "NVIDIA L4", mb: 23_034, uuid: "GPU-0d6d1f4e-0000-4000-8000-000000000002" };

describe("the controller's own node is measured like an agent (Distributed LLM)", () => {
  let dir: string;
  let smi: string;
  let cluster: TestController;
  let nodeApi: Client<typeof NodeService>;
  let discovery: Client<typeof DiscoveryService>;

  before(async () => {
    dir = await mkdtemp(join(os.tmpdir(), "corral-own-node-"));
    smi = join(dir, "nvidia-smi");
    await writeFakeNvidiaSmi(smi, [h100]);
    cluster = await startTestController({
      node: { name: "My Controller", nvidiaSmi: smi, resourcesRefresh: "1s" },
      // The node registered below never heartbeats: a long interval keeps it ready for the whole test.
      liveness: { minInterval: "10m" },
    });
    nodeApi = plaintextClient(NodeService, cluster.bridgePort);
    discovery = plaintextClient(DiscoveryService, cluster.bridgePort);
  });
  after(async () => {
    await cluster?.close();
    await rm(dir, { recursive: true, force: true });
  });

  it("GetNodeInfo and GetPeers show the controller machine's CPU, memory, GPU and layers", async () => {
    const { node } = await nodeApi.getNodeInfo({ nodeId: "My Controller" });
    const resources = node?.resources;
    assert.equal(resources?.cpuCores, BigInt(os.availableParallelism()));
    assert.equal(resources?.memoryMb, BigInt(totalMemoryMb()));
    assert.deepEqual(
      resources?.gpus.map((gpu) => [gpu.name, gpu.memoryMb, gpu.uuid]),
      [[h100.name, BigInt(h100.mb), h100.uuid]],
    );
    assert.equal(resources?.maxLayers, maxLayersFor(totalMemoryMb(), [{ ...h100, memoryMb: h100.mb }]));
    const peers = await nodeApi.getPeers({ includeSelf: true });
    const own = peers.peers.find((peer) => peer.nodeId === node?.nodeId);
    assert.equal(own?.resources?.memoryMb, BigInt(totalMemoryMb()));
    assert.equal(own?.resources?.gpus.length, 1);
  });

  it("GetMetrics memory_usage of the controller's node is a reading, not an error", async () => {
    const answer = await nodeApi.getMetrics({
      nodeId: "My Controller",
      metricNames: ["memory_usage", "memory_mb", "gpus", "gpu_memory_mb"],
    });
    assert.equal(answer.success, true);
    const byName = new Map(answer.metrics.map((metric) => [metric.name, metric]));
    assert.equal(byName.get("memory_usage")?.error, "");
    const usage = byName.get("memory_usage")?.value ?? 0;
    assert.ok(usage > 0 && usage <= 100, `memory_usage ${usage}`);
    assert.equal(byName.get("memory_mb")?.value, totalMemoryMb());
    assert.equal(byName.get("gpus")?.value, 1);
    assert.equal(byName.get("gpu_memory_mb")?.value, h100.mb);
  });

  it("cluster totals count the controller's machine, and its GPU takes model layers first", async () => {
    await discovery.registerWithCluster({
      nodeId: "cpu-node",
      address: "127.0.0.1",
      port: 7001,
      resources: { cpuCores: 8n, memoryMb: 16_384n, maxLayers: 16 },
    });
    const controllerId = (await nodeApi.getNodeInfo({ nodeId: "My Controller" })).node?.nodeId ?? "";
    const models = plaintextClient(ModelsService, cluster.bridgePort);
    const added = await models.addModel({ name: "llama-2-7b", layerCount: 32, assign: true });
    assert.deepEqual(
      added.model?.assignments.map((range) => [range.nodeId, range.start, range.count]),
      [[controllerId, 0, 32]],
      "the GPU node (the controller's machine) holds the whole model",
    );
    const info = await discovery.getClusterInfo({});
    assert.deepEqual(info.models[0]?.nodeAssignments, [controllerId]);
    assert.equal(info.metrics?.totalMemoryMb, BigInt(totalMemoryMb() + 16_384));
    assert.equal(info.metrics?.totalGpus, 1);
    assert.equal(info.metrics?.allocatedLayers, 32);
    const own = (await nodeApi.getNodeInfo({ nodeId: controllerId })).node;
    assert.equal(own?.resources?.usedLayers, 32);
  });

  it("keeps the controller's resources current: a GPU that appears is seen, placement's layers stay", async () => {
    await writeFakeNvidiaSmi(smi, [h100, l4]);
    const node = await eventually(
      async () => {
        const { node } = await nodeApi.getNodeInfo({ nodeId: "My Controller" });
        return node?.resources?.gpus.length === 2 ? node : undefined;
      },
      15_000,
      "the second GPU on the controller's node",
    );
    assert.deepEqual(
      node.resources?.gpus.map((gpu) => gpu.uuid),
      [h100.uuid, l4.uuid],
    );
    assert.equal(node.resources?.usedLayers, 32, "a refresh leaves placement's used_layers alone");
  });
});
