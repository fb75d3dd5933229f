import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { PipelineRunsService } from "../../src/gen/corral/v1/pipelines_pb.ts";
import { PipelinesService, type TelemetrySample } from "../../src/gen/pipelines_pb.ts";
import { eventually } from "../helpers/agent.ts";
import { plaintextClient } from "../helpers/clients.ts";
import { startTestController, type TestController } from "../helpers/controller.ts";
import { type AgentProcess, CorralProcesses, startAgentProcess } from "../helpers/corral-processes.ts";

/**
 * NanoPing's pipeline settings through an agent's local API (a real `corral up` process): an unset
 * cpu_pin is "chosen automatically" (least loaded, reported in the run's cpu_pin with `applied`), and
 * performance_mode changes how the run is scheduled: busy-wait pacing and a raised priority when on
 * (the default), timer pacing and nice 10 when off.
 */

/** A timed source into a sink, and a process block that lives until the run is stopped. */
const config = JSON.stringify({
  version: 13,
  plumr_config: {
    pipeline: {
      sink: { traffic_sink: { input: "[sink|in:0]-[source|out:0]", mtu: 1500 } },
      source: {
        uniform_traffic_source: {
          output: "[sink|in:0]-[source|out:0]",
          total_packets: 1_000_000,
          interval: 1000,
          packet_size: 64,
        },
      },
      worker: { process: { argv: ["/bin/sleep", "300"] } },
    },
  },
});

const procStatus = (pid: number) => readFileSync(`/proc/${pid}/status`, "utf8");
const allowedCpus = (pid: number) => /Cpus_allowed_list:\s*(\S+)/.exec(procStatus(pid))?.[1];
/** Field 19 of /proc/<pid>/stat. */
const niceOf = (pid: number) => {
  const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
  return Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[16]);
};
/** CPUs a process started here may use (the agent inherits this process's mask). */
const usable = (() => {
  const cpus = new Set<number>();
  for (const part of (allowedCpus(process.pid) ?? "").split(",")) {
    const [a, b] = part.split("-").map(Number) as [number, number | undefined];
    for (let n = a; n <= (b ?? a); n++) cpus.add(n);
  }
  return cpus;
})();

/** One telemetry sample's metric collections, as block → field → value (strings and numbers). */
function metricsOf(sample: TelemetrySample): Map<string, Map<string, unknown>> {
  const blocks = new Map<string, Map<string, unknown>>();
  for (const collection of sample.metricCollections) {
    const fields = new Map<string, unknown>();
    for (const [field, metric] of Object.entries(collection.metrics)) {
      const type = metric.type;
      if (type.case === "constant") fields.set(field, type.value.value?.value);
      else if (type.case === "uint64" || type.case === "float64")
        fields.set(field, type.value.optionalValue.value);
    }
    blocks.set(collection.path, fields);
  }
  return blocks;
}

describe("NanoPing performance_mode and an automatic cpu_pin", { timeout: 120_000 }, () => {
  const processes = new CorralProcesses();
  let root: string;
  let controller: TestController;
  let agent: AgentProcess;

  before(async () => {
    root = await mkdtemp(join(tmpdir(), "corral-perf-mode-"));
    controller = await startTestController();
    const { token } = await controller.controller.context.tokens.create({
      role: "node",
      ttlMs: 600_000,
      uses: 1,
      description: "performance mode test",
      createdBy: "test",
      caFingerprint: controller.controller.ca.fingerprint,
    });
    agent = await startAgentProcess(processes, join(root, "agent"), [
      "--name",
      "perf-1",
      "--join",
      `127.0.0.1:${controller.clusterPort}`,
      "--token",
      token,
      "--pipeline-allow",
      "/bin/sleep",
    ]);
  });

  after(async () => {
    await processes.killAll();
    await controller?.close();
    if (root !== undefined) await rm(root, { recursive: true, force: true });
  });

  it("pins an unpinned run to a CPU it chose, spreads runs, and schedules by performance_mode", async () => {
    const pipelines = plaintextClient(PipelinesService, agent.localApiPort);
    const runs = plaintextClient(PipelineRunsService, agent.localApiPort);
    const nodeId = agent.nodeId;

    // performance_mode and cpu_pin unset (NanoPing's defaults: on, chosen automatically), then off.
    const started = [];
    for (const [name, performance] of [
      ["fast", undefined],
      ["gentle", false],
    ] as const) {
      const { pipeline } = await pipelines.createPipeline({
        nodeId,
        name,
        jsonConfig: config,
        restartPolicy: { restartPolicy: { case: "never", value: {} } },
        ...(performance === undefined
          ? {}
          : { optionalPerformanceMode: { case: "performanceMode", value: performance } }),
      });
      assert.ok(pipeline);
      assert.equal(pipeline.optionalCpuPin.case, undefined, "the setting itself stays unset");
      const { runId } = await pipelines.startPipeline({
        nodeId,
        pipelineIdentifier: { case: "id", value: pipeline.id },
      });
      const run = await eventually(
        async () => (await runs.getRun({ nodeId, runId })).run?.cpuPin,
        30_000,
        `${name}'s cpu_pin report`,
      );
      const telemetry = pipelines.openTelemetryStream(
        { nodeId, runId },
        { signal: AbortSignal.timeout(30_000) },
      );
      const blocks = await (async () => {
        for await (const sample of telemetry) {
          const kpis = metricsOf(sample);
          if (kpis.get("worker")?.get("pid") !== undefined && kpis.get("source")?.get("pacing") !== undefined)
            return kpis;
        }
        throw new Error("telemetry ended");
      })();
      started.push({ name, pin: run, blocks, pid: Number(blocks.get("worker")?.get("pid")) });
    }

    const [fast, gentle] = started as [(typeof started)[0], (typeof started)[0]];
    for (const { name, pin, pid } of started) {
      assert.equal(pin.applied, true, `${name}: ${pin.detail}`);
      assert.match(pin.detail, /chosen automatically/, name);
      assert.ok(usable.has(pin.cpu), `${name}: cpu ${pin.cpu} is one this machine lets it use`);
      // The process block runs on that CPU only.
      assert.equal(allowedCpus(pid), String(pin.cpu), name);
    }
    // The second run went to another CPU (fewest runs pinned) where there is one.
    if (usable.size > 1) assert.notEqual(gentle.pin.cpu, fast.pin.cpu);

    // performance_mode on: busy-wait pacing, priority raised where allowed (else the agent's own);
    // off: timer pacing and nice 10, inherited by the run's programs.
    assert.equal(fast.blocks.get("source")?.get("pacing"), "busy-wait");
    assert.equal(gentle.blocks.get("source")?.get("pacing"), "timer");
    const agentNice = niceOf(agent.process.child.pid as number);
    assert.ok(niceOf(fast.pid) <= agentNice, `fast nice ${niceOf(fast.pid)} vs agent ${agentNice}`);
    assert.equal(niceOf(gentle.pid), 10);
    assert.equal(Number(gentle.blocks.get("worker")?.get("nice")), 10);

    for (const { name } of started)
      await pipelines.stopPipeline({ nodeId, pipelineIdentifier: { case: "name", value: name } });
  });
});
