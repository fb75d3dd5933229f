import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { setTimeout as sleep } from "node:timers/promises";
import { LogEntrySchema, NodeAgent } from "../../src/gen/picontroller_pb.ts";
import { type Kpi, PipelinesService, type TelemetrySample } from "../../src/gen/pipelines_pb.ts";
import { plaintextClient } from "../helpers/clients.ts";
import { startTestController, type TestController } from "../helpers/controller.ts";
import { guideConfig } from "./fixtures.ts";

/**
 * The guide's config started on the controller's own node, over gRPC on the loopback bridge:
 * telemetry reaches 5 000 packets received and 0 loss, logs arrive on openLogStream and on NodeAgent
 * StreamLogs (`pipeline:<run id>`), and stopPipeline ends the run and its streams.
 */
describe("pipeline streams on the controller's node", () => {
  let controller: TestController;
  let nodeId: string;
  let pipelines: ReturnType<typeof plaintextClient<typeof PipelinesService>>;

  before(async () => {
    controller = await startTestController();
    nodeId = controller.controller.context.facts.controllerNodeId;
    pipelines = plaintextClient(PipelinesService, controller.bridgePort);
  });

  after(async () => {
    await controller?.close();
  });

  const kpi = (sample: TelemetrySample, id: string, field: string): Kpi | undefined =>
    sample.kpis.find((k) => k.id === id && k.field === field);
  const number = (k: Kpi | undefined): number | undefined =>
    k === undefined || k.value.case === undefined || typeof k.value.value === "string"
      ? undefined
      : Number(k.value.value);

  it("telemetry: the sink receives all 5 000 packets with no loss", { timeout: 60_000 }, async () => {
    const { pipeline } = await pipelines.createPipeline({
      nodeId,
      name: "streams-telemetry",
      jsonConfig: guideConfig,
    });
    assert.ok(pipeline);
    const { runId } = await pipelines.startPipeline({
      nodeId,
      pipelineIdentifier: { case: "id", value: pipeline.id },
    });
    assert.match(runId, /^run-/);
    const byRun = await pipelines.getPipelineByRunId({ nodeId, id: runId });
    assert.equal(byRun.pipeline?.id, pipeline.id);

    const stop = new AbortController();
    let received = 0;
    let lost = -1;
    let samples = 0;
    let blockCollections: string[] = [];
    try {
      for await (const sample of pipelines.openTelemetryStream({ nodeId, runId }, { signal: stop.signal })) {
        samples++;
        received = number(kpi(sample, "traffic_sink-1", "packets_received")) ?? received;
        lost = number(kpi(sample, "traffic_sink-1", "lost")) ?? lost;
        blockCollections = sample.metricCollections.map((c) => c.path).sort();
        if (received >= 5000) break;
      }
    } finally {
      stop.abort();
    }
    assert.ok(samples >= 1);
    assert.equal(received, 5000);
    assert.equal(lost, 0);
    assert.deepEqual(blockCollections, ["traffic_sink-1", "uniform_traffic_source-1"]);
    await pipelines.stopPipeline({ nodeId, pipelineIdentifier: { case: "runId", value: runId } });
    await pipelines.deletePipeline({ nodeId, id: pipeline.id });
  });

  it("logs on openLogStream and NodeAgent StreamLogs; stop ends the run and the streams", {
    timeout: 60_000,
  }, async (t) => {
    // Slow enough (5 000 × 2 ms) that the run is still live when we stop it.
    const slow = guideConfig.replace('"interval": 25', '"interval": 2000');
    assert.notEqual(slow, guideConfig);
    const { pipeline } = await pipelines.createPipeline({ nodeId, name: "streams-logs", jsonConfig: slow });
    assert.ok(pipeline);
    const { runId } = await pipelines.startPipeline({
      nodeId,
      pipelineIdentifier: { case: "name", value: "streams-logs" },
    });

    // Deadlines would keep the process alive after the test; a signal aborted at the end does not.
    const streams = new AbortController();
    t.after(() => streams.abort());
    const logs: string[] = [];
    const logStream = (async () => {
      for await (const batch of pipelines.openLogStream(
        { nodeId, runId, options: { optionalLines: { case: "lines", value: 100n } } },
        { signal: streams.signal },
      ))
        for (const message of batch.messages) logs.push(message.message);
    })();
    const nodeAgent = plaintextClient(NodeAgent, controller.bridgePort);
    const agentLines: string[] = [];
    const agentStream = (async () => {
      for await (const entry of nodeAgent.streamLogs(
        { source: `pipeline:${runId}`, tail: 100, follow: true },
        { signal: streams.signal },
      )) {
        assert.equal(entry.$typeName, LogEntrySchema.typeName);
        agentLines.push(entry.message);
      }
    })();
    const started = (lines: string[]) => lines.some((l) => l.startsWith("run started:"));
    for (let i = 0; i < 200 && !(started(logs) && started(agentLines)); i++) await sleep(50);
    assert.ok(started(logs), `openLogStream: ${JSON.stringify(logs)}`);
    assert.ok(started(agentLines), `StreamLogs: ${JSON.stringify(agentLines)}`);

    const live = await pipelines.getPipelineById({ nodeId, id: pipeline.id });
    assert.equal(live.pipeline?.started, true);
    assert.equal(
      live.pipeline?.optionalCurrentRun.case === "currentRun" && live.pipeline.optionalCurrentRun.value,
      runId,
    );

    // Telemetry is open while we stop; it must end on its own.
    const telemetry = (async () => {
      let n = 0;
      for await (const _ of pipelines.openTelemetryStream({ nodeId, runId }, { signal: streams.signal })) n++;
      return n;
    })();
    await sleep(1200);
    await pipelines.stopPipeline({ nodeId, pipelineIdentifier: { case: "id", value: pipeline.id } });
    const ended = Promise.all([logStream, agentStream, telemetry]);
    const outcome = await Promise.race([
      ended.then(() => "ended"),
      sleep(10_000, undefined, { ref: false }).then(() => "hung"),
    ]);
    assert.equal(outcome, "ended", "log, StreamLogs and telemetry streams end when the run stops");
    assert.ok((await telemetry) >= 1);
    assert.ok(
      logs.some((l) => l.includes("run stopped")),
      `openLogStream: ${JSON.stringify(logs.slice(-5))}`,
    );
    assert.ok(
      agentLines.some((l) => l.includes("run stopped")),
      `StreamLogs: ${JSON.stringify(agentLines.slice(-5))}`,
    );
    // Same lines on both paths.
    assert.deepEqual(agentLines, logs);

    const stopped = await pipelines.getPipelineById({ nodeId, id: pipeline.id });
    assert.equal(stopped.pipeline?.started, false);
    assert.equal(stopped.pipeline?.optionalCurrentRun.case, undefined);
    await pipelines.deletePipeline({ nodeId, id: pipeline.id });
  });
});
