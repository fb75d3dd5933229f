import assert from "node:assert/strict";
import { chmod, mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { delimiter, join } from "node:path";
import { after, before, describe, it } from "node:test";
import { durationFromMs } from "@bufbuild/protobuf/wkt";
import { type Client, Code, ConnectError } from "@connectrpc/connect";
import { NodeStatus, NodesService } from "../../src/gen/corral/v1/nodes_pb.ts";
import { Role, TokensService } from "../../src/gen/corral/v1/tokens_pb.ts";
import { type MetricsStreamResponse, type MetricValue, NodeService } from "../../src/gen/node_pb.ts";
import { eventually } from "../helpers/agent.ts";
import { plaintextClient } from "../helpers/clients.ts";
import {
  type ControllerProcess,
  CorralProcesses,
  startAgentProcess,
  startControllerProcess,
} from "../helpers/corral-processes.ts";

/**
 * A fake nvidia-smi on PATH for the controller and agent processes: discovery sees one 24 GiB GPU; each
 * metrics query answers with figures taken from the clock in milliseconds, so two readings taken at
 * different times differ, and a figure sent twice from one reading would show as a repeat.
 */
const fakeNvidiaSmi = `#!/bin/sh
case "$*" in
  *utilization.gpu*)
    ms=$(date +%s%3N)
    echo "GPU-fake-0, Fake GPU, $((ms % 101)), $((ms % 10000000)), 10000000, 40"
    ;;
  *)
    echo "Fake GPU, 24576, GPU-fake-0"
    ;;
esac
`;

const codeOf = (error: unknown) => (error instanceof ConnectError ? error.code : undefined);
const byName = (metrics: readonly MetricValue[], name: string) => metrics.find((m) => m.name === name);

/** The first `n` messages of a stream, bounded by a deadline, then the stream is cancelled. */
async function take<T>(stream: (signal: AbortSignal) => AsyncIterable<T>, n: number, timeoutMs = 20_000) {
  const stop = new AbortController();
  const deadline = setTimeout(() => stop.abort(), timeoutMs);
  const got: T[] = [];
  try {
    for await (const message of stream(stop.signal)) {
      got.push(message);
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

describe("Distributed LLM StreamMetrics/GetMetrics: a reading of the node per message, GPUs included", () => {
  const processes = new CorralProcesses();
  const savedPath = process.env.PATH;
  let dir = "";
  let controller: ControllerProcess;
  let nodeApi: Client<typeof NodeService>;

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), "corral-live-metrics-"));
    const bin = join(dir, "bin");
    await mkdir(bin);
    await writeFile(join(bin, "nvidia-smi"), fakeNvidiaSmi);
    await chmod(join(bin, "nvidia-smi"), 0o755);
    // Inherited by the processes started below (and only them: restored in `after`).
    process.env.PATH = `${bin}${delimiter}${savedPath ?? ""}`;
    await mkdir(join(dir, "controller"));
    controller = await startControllerProcess(processes, join(dir, "controller"));
    const { token } = await plaintextClient(TokensService, controller.bridgePort).createToken({
      role: Role.NODE,
      ttl: durationFromMs(600_000),
      uses: 1,
      description: "live metrics test",
    });
    await startAgentProcess(processes, join(dir, "agent-1"), [
      "--name",
      "agent-1",
      "--join",
      controller.cluster,
      "--token",
      token,
    ]);
    const nodes = plaintextClient(NodesService, controller.bridgePort);
    await eventually(
      async () => {
        const { nodes: list } = await nodes.listNodes({});
        return list.some((n) => n.name === "agent-1" && n.status === NodeStatus.READY) ? true : undefined;
      },
      30_000,
      "agent-1 ready",
    );
    nodeApi = plaintextClient(NodeService, controller.bridgePort);
  });
  after(async () => {
    process.env.PATH = savedPath;
    await processes.killAll();
    if (dir !== "") await rm(dir, { recursive: true, force: true });
  });

  it("StreamMetrics interval_seconds 1: every message is a new reading, GPU load and memory included", async () => {
    const names = [
      "gpu_utilization",
      "gpu_memory_used_mb",
      "gpu_memory_mb",
      "gpus",
      "cpu_usage",
      "memory_mb",
    ];
    const got = await take<MetricsStreamResponse>(
      (signal) =>
        nodeApi.streamMetrics({ nodeId: "agent-1", intervalSeconds: 1, metricNames: names }, { signal }),
      3,
    );
    assert.equal(got.length, 3);
    for (const message of got) {
      for (const name of names) {
        const metric = byName(message.metrics, name);
        assert.equal(metric?.error, "", `${name}: ${metric?.error}`);
        assert.equal(metric?.labels.source, "node", `${name} is read from the node for this message`);
      }
      assert.equal(byName(message.metrics, "gpus")?.value, 1);
      assert.equal(byName(message.metrics, "gpu_memory_mb")?.value, 10_000_000);
    }
    const used = got.map((message) => byName(message.metrics, "gpu_memory_used_mb")?.value);
    assert.equal(new Set(used).size, 3, `three readings, not one repeated: ${used.join(", ")}`);
  });

  it("GetMetrics reads the node now too; the controller's own node likewise; unknown names keep their error", async () => {
    const first = await nodeApi.getMetrics({ nodeId: "agent-1", metricNames: ["gpu_memory_used_mb"] });
    await new Promise((resolve) => setTimeout(resolve, 5));
    const second = await nodeApi.getMetrics({ nodeId: "agent-1", metricNames: ["gpu_memory_used_mb"] });
    assert.equal(first.metrics[0]?.labels.source, "node");
    assert.notEqual(first.metrics[0]?.value, second.metrics[0]?.value, "each call takes its own reading");

    const own = await nodeApi.getMetrics({
      nodeId: "My Controller",
      metricNames: ["gpu_utilization", "memory_usage", "no_such_metric"],
    });
    assert.equal(own.success, false);
    assert.equal(byName(own.metrics, "gpu_utilization")?.labels.source, "node");
    assert.equal(byName(own.metrics, "gpu_utilization")?.error, "");
    assert.equal(byName(own.metrics, "memory_usage")?.error, "");
    assert.match(
      byName(own.metrics, "no_such_metric")?.error ?? "",
      /^unknown metric "no_such_metric"; known: /,
    );
    await assert.rejects(
      nodeApi.getMetrics({ nodeId: "ghost", metricNames: ["cpu_usage"] }),
      (e) => codeOf(e) === Code.NotFound,
    );
  });
});
