import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { PipelineRunState, PipelineRunsService } from "../../src/gen/corral/v1/pipelines_pb.ts";
import { type Kpi, PipelinesService, type TelemetrySample } from "../../src/gen/pipelines_pb.ts";
import { eventually, joinWithToken, startTestAgent, type TestAgent } from "../helpers/agent.ts";
import { plaintextClient } from "../helpers/clients.ts";
import { startTestController, type TestController } from "../helpers/controller.ts";

const link = (to: string, from: string) => `[${to}|in:0]-[${from}|out:0]`;

/** Node B: a udp_receiver on loopback feeding a traffic_sink. */
const receiverConfig = JSON.stringify({
  version: 13,
  plumr_config: {
    pipeline: {
      "udp_receiver-1": {
        udp_receiver: { output: link("traffic_sink-1", "udp_receiver-1"), bind: "127.0.0.1", port: 0 },
      },
      "traffic_sink-1": { traffic_sink: { input: link("traffic_sink-1", "udp_receiver-1"), mtu: 1500 } },
    },
  },
});

/** Node A: a source whose packets go to node B's receiver, named by node, pipeline and block. */
const senderConfig = (packets: number) =>
  JSON.stringify({
    version: 13,
    plumr_config: {
      pipeline: {
        "uniform_traffic_source-1": {
          uniform_traffic_source: {
            output: link("udp_sender-1", "uniform_traffic_source-1"),
            total_packets: packets,
            interval: 200,
          },
        },
        "udp_sender-1": {
          udp_sender: {
            input: link("udp_sender-1", "uniform_traffic_source-1"),
            target: { node: "pipe-rx", pipeline: "rx", block: "udp_receiver-1" },
          },
        },
      },
    },
  });

const kpi = (sample: TelemetrySample, id: string, field: string): number | undefined => {
  const k: Kpi | undefined = sample.kpis.find((x) => x.id === id && x.field === field);
  return k === undefined || k.value.case === undefined || typeof k.value.value === "string"
    ? undefined
    : Number(k.value.value);
};

/**
 * A pipeline across two agents: source + udp_sender on one, udp_receiver + sink on the other, real
 * UDP sockets on loopback; the sender learns the receiver's port through the controller.
 */
describe("a UDP link between pipelines on two nodes", () => {
  let cluster: TestController;
  let rx: TestAgent;
  let tx: TestAgent;
  before(async () => {
    cluster = await startTestController();
    rx = await startTestAgent({ name: "pipe-rx" });
    tx = await startTestAgent({ name: "pipe-tx" });
    await joinWithToken(cluster, rx);
    await joinWithToken(cluster, tx);
  });
  after(async () => {
    await tx?.close();
    await rx?.close();
    await cluster?.close();
  });

  it("delivers the packets, counts loss, and both runs complete", { timeout: 90_000 }, async () => {
    const pipelines = plaintextClient(PipelinesService, cluster.bridgePort);
    const runs = plaintextClient(PipelineRunsService, cluster.bridgePort);
    const sent = 2000;

    const { pipeline: receiver } = await pipelines.createPipeline({
      nodeId: "pipe-rx",
      name: "rx",
      jsonConfig: receiverConfig,
    });
    assert.ok(receiver);
    const { runId: rxRun } = await pipelines.startPipeline({
      nodeId: "pipe-rx",
      pipelineIdentifier: { case: "name", value: "rx" },
    });
    // The receiver's bound address is part of its run state.
    const endpoint = await eventually(async () => {
      const { run } = await runs.getRun({ nodeId: "pipe-rx", runId: rxRun });
      return run?.endpoints.find((e) => e.block === "udp_receiver-1");
    });
    assert.equal(endpoint.host, "127.0.0.1");
    assert.ok(endpoint.port > 0);

    await pipelines.createPipeline({ nodeId: "pipe-tx", name: "tx", jsonConfig: senderConfig(sent) });
    const { runId: txRun } = await pipelines.startPipeline({
      nodeId: "pipe-tx",
      pipelineIdentifier: { case: "name", value: "tx" },
    });

    const finished = (nodeId: string, runId: string) =>
      eventually(
        async () => {
          const { run } = await runs.getRun({ nodeId, runId });
          return run !== undefined && run.finishedAt !== undefined ? run : undefined;
        },
        60_000,
        `${runId} finished`,
      );
    const txDone = await finished("pipe-tx", txRun);
    assert.equal(txDone.state, PipelineRunState.SUCCEEDED, txDone.exitReason);
    const rxDone = await finished("pipe-rx", rxRun);
    assert.equal(rxDone.state, PipelineRunState.SUCCEEDED, rxDone.exitReason);
    assert.equal(rxDone.exitReason, "completed");

    // The finished run's final counters, over NanoPing's telemetry stream.
    let last: TelemetrySample | undefined;
    for await (const sample of pipelines.openTelemetryStream({ nodeId: "pipe-rx", runId: rxRun }))
      last = sample;
    assert.ok(last);
    const received = kpi(last, "traffic_sink-1", "packets_received") ?? -1;
    const lostOnNetwork = kpi(last, "udp_receiver-1", "lost") ?? -1;
    const peerSent = kpi(last, "udp_receiver-1", "peer_sent");
    assert.equal(peerSent, sent, "the receiver learnt how many packets were sent");
    assert.ok(received > 0, "packets crossed the link");
    assert.equal(received + lostOnNetwork, sent, `received ${received} + lost ${lostOnNetwork} = sent`);

    let txLast: TelemetrySample | undefined;
    for await (const sample of pipelines.openTelemetryStream({ nodeId: "pipe-tx", runId: txRun }))
      txLast = sample;
    assert.ok(txLast);
    assert.equal(kpi(txLast, "udp_sender-1", "packets_sent"), sent);

    // Both pipelines are no longer started once their runs completed.
    const { pipelines: rxList } = await runs.listPipelines({ nodeId: "pipe-rx" });
    assert.deepEqual(
      rxList.map((p) => [p.name, p.started, p.run?.state]),
      [["rx", false, PipelineRunState.SUCCEEDED]],
    );
  });

  it("the controller's own node sends to an agent's receiver", { timeout: 90_000 }, async () => {
    const pipelines = plaintextClient(PipelinesService, cluster.bridgePort);
    const runs = plaintextClient(PipelineRunsService, cluster.bridgePort);
    const own = cluster.controller.context.facts.controllerNodeId;
    // "rx" completed in the test before: a new run binds a new port, which the sender asks for anew.
    const { runId: rxRun } = await pipelines.startPipeline({
      nodeId: "pipe-rx",
      pipelineIdentifier: { case: "name", value: "rx" },
    });
    await eventually(async () => {
      const { run } = await runs.getRun({ nodeId: "pipe-rx", runId: rxRun });
      return run?.endpoints.length ? true : undefined;
    });
    await pipelines.createPipeline({ nodeId: own, name: "tx-ctl", jsonConfig: senderConfig(500) });
    const { runId: txRun } = await pipelines.startPipeline({
      nodeId: own,
      pipelineIdentifier: { case: "name", value: "tx-ctl" },
    });
    const done = async (nodeId: string, runId: string) =>
      eventually(
        async () => {
          const { run } = await runs.getRun({ nodeId, runId });
          return run?.finishedAt === undefined ? undefined : run;
        },
        60_000,
        `${runId} finished`,
      );
    assert.equal((await done(own, txRun)).state, PipelineRunState.SUCCEEDED);
    assert.equal((await done("pipe-rx", rxRun)).state, PipelineRunState.SUCCEEDED);
    let last: TelemetrySample | undefined;
    for await (const sample of pipelines.openTelemetryStream({ nodeId: "pipe-rx", runId: rxRun }))
      last = sample;
    assert.ok(last);
    assert.equal(kpi(last, "udp_receiver-1", "peer_sent"), 500);
    const received = kpi(last, "traffic_sink-1", "packets_received") ?? -1;
    assert.ok(received > 0);
    assert.equal(received + (kpi(last, "udp_receiver-1", "lost") ?? -1), 500);
  });

  it("a sender whose receiver is not running fails after instructions_timeout", {
    timeout: 60_000,
  }, async () => {
    const pipelines = plaintextClient(PipelinesService, cluster.bridgePort);
    const runs = plaintextClient(PipelineRunsService, cluster.bridgePort);
    const config = JSON.parse(senderConfig(10));
    config.plumr_config.pipeline["udp_sender-1"].udp_sender.target.pipeline = "nobody";
    await pipelines.createPipeline({
      nodeId: "pipe-tx",
      name: "tx-nowhere",
      jsonConfig: JSON.stringify(config),
      optionalInstructionsTimeout: { case: "instructionsTimeout", value: 1 },
    });
    const { runId } = await pipelines.startPipeline({
      nodeId: "pipe-tx",
      pipelineIdentifier: { case: "name", value: "tx-nowhere" },
    });
    const run = await eventually(
      async () => {
        const { run } = await runs.getRun({ nodeId: "pipe-tx", runId });
        return run?.finishedAt === undefined ? undefined : run;
      },
      30_000,
      "the run to fail",
    );
    assert.equal(run.state, PipelineRunState.FAILED);
    assert.match(run.exitReason, /udp target not resolved: .*nobody/);
  });
});
