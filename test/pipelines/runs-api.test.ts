import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { ConnectError } from "@connectrpc/connect";
import {
  PipelineRunEventType,
  PipelineRunState,
  PipelineRunsService,
  type WatchPipelineRunsResponse,
} from "../../src/gen/corral/v1/pipelines_pb.ts";
import { PipelinesService } from "../../src/gen/pipelines_pb.ts";
import { eventually } from "../helpers/agent.ts";
import { plaintextClient } from "../helpers/clients.ts";
import { startTestController, type TestController } from "../helpers/controller.ts";
import { guideConfig, processConfig } from "./fixtures.ts";

/** corral.v1.PipelineRunsService on the controller's own node: run state, exit status, restarts. */
describe("PipelineRunsService", () => {
  let controller: TestController;
  let nodeId: string;
  before(async () => {
    controller = await startTestController({ pipelines: { processAllow: ["/bin/sh"] } });
    nodeId = controller.controller.context.facts.controllerNodeId;
  });
  after(async () => {
    await controller?.close();
  });

  it("reports a failing run's exit code and restart count, and each state change", {
    timeout: 60_000,
  }, async () => {
    const pipelines = plaintextClient(PipelinesService, controller.bridgePort);
    const runs = plaintextClient(PipelineRunsService, controller.bridgePort);
    const watch = new AbortController();
    const events: WatchPipelineRunsResponse[] = [];
    const watching = (async () => {
      try {
        for await (const event of runs.watchPipelines({ nodeId }, { signal: watch.signal }))
          events.push(event);
      } catch (error) {
        if (!watch.signal.aborted) throw error;
      }
    })();
    await eventually(async () =>
      events.some((e) => e.type === PipelineRunEventType.SYNCED) ? true : undefined,
    );

    const { pipeline } = await pipelines.createPipeline({
      nodeId,
      name: "exits-3",
      jsonConfig: processConfig(["/bin/sh", "-c", "exit 3"]),
      restartPolicy: { restartPolicy: { case: "onFailure", value: { maxRestarts: 2 } } },
    });
    assert.ok(pipeline);
    const { runId } = await pipelines.startPipeline({
      nodeId,
      pipelineIdentifier: { case: "id", value: pipeline.id },
    });
    const run = await eventually(
      async () => {
        const { run } = await runs.getRun({ nodeId, runId });
        return run?.state === PipelineRunState.FAILED ? run : undefined;
      },
      30_000,
      "the run to fail",
    );
    assert.equal(run.exitCode, 3);
    assert.equal(run.restarts, 2);
    assert.match(run.exitReason, /a process exited 3/);
    assert.ok(run.startedAt !== undefined && run.finishedAt !== undefined);

    const { pipelines: list } = await runs.listPipelines({ nodeId });
    const summary = list.find((p) => p.pipelineId === pipeline.id);
    assert.equal(summary?.started, false);
    assert.equal(summary?.restartPolicy, "on_failure(max 2)");
    assert.equal(summary?.run?.runId, runId);

    // The watcher saw it created, then its run's states up to FAILED.
    const states = await eventually(async () => {
      const seen = events
        .filter((e) => e.pipeline?.pipelineId === pipeline.id && e.type === PipelineRunEventType.PUT)
        .map((e) => e.pipeline?.run?.state ?? "none");
      return seen.includes(PipelineRunState.FAILED) ? seen : undefined;
    });
    assert.equal(states[0], "none", "created first, with no run");
    assert.ok(states.includes(PipelineRunState.RESTARTING));
    assert.equal(states.at(-1), PipelineRunState.FAILED);

    await pipelines.deletePipeline({ nodeId, id: pipeline.id });
    await eventually(async () =>
      events.some((e) => e.type === PipelineRunEventType.DELETED && e.pipeline?.pipelineId === pipeline.id)
        ? true
        : undefined,
    );
    watch.abort();
    await watching;
  });

  it("a completed run is SUCCEEDED with exit code 0; unknown runs are NOT_FOUND", {
    timeout: 60_000,
  }, async () => {
    const pipelines = plaintextClient(PipelinesService, controller.bridgePort);
    const runs = plaintextClient(PipelineRunsService, controller.bridgePort);
    await pipelines.createPipeline({ nodeId, name: "guide", jsonConfig: guideConfig });
    const { runId } = await pipelines.startPipeline({
      nodeId,
      pipelineIdentifier: { case: "name", value: "guide" },
    });
    const run = await eventually(
      async () => {
        const { run } = await runs.getRun({ nodeId: "", runId });
        return run?.finishedAt === undefined ? undefined : run;
      },
      30_000,
      "the run to finish",
    );
    assert.equal(run.state, PipelineRunState.SUCCEEDED);
    assert.equal(run.exitCode, 0);
    assert.equal(run.exitReason, "completed");
    // Its log and telemetry streams end by themselves, the last line saying how the run ended.
    const lines: string[] = [];
    for await (const batch of pipelines.openLogStream(
      { nodeId, runId },
      { signal: AbortSignal.timeout(10_000) },
    ))
      lines.push(...batch.messages.map((m) => m.message));
    assert.equal(lines.at(-1), "run succeeded: completed");
    let samples = 0;
    for await (const _ of pipelines.openTelemetryStream(
      { nodeId, runId },
      { signal: AbortSignal.timeout(10_000) },
    ))
      samples++;
    assert.equal(samples, 1, "a finished run's telemetry is its final sample");
    const { pipeline } = await pipelines.getPipelineByName({ nodeId, name: "guide" });
    assert.equal(pipeline?.started, false);
    assert.equal(pipeline?.optionalCurrentRun.case, undefined);
    await assert.rejects(
      runs.getRun({ nodeId, runId: "run-nope" }),
      (e: unknown) => e instanceof ConnectError && e.code === 5,
    );
    await assert.rejects(
      runs.listPipelines({ nodeId: "no-such-node" }),
      (e: unknown) => e instanceof ConnectError && e.code === 5,
    );
  });
});
