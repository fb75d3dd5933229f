import { create } from "@bufbuild/protobuf";
import { timestampFromMs } from "@bufbuild/protobuf/wkt";
import type { HandlerContext, ServiceImpl } from "@connectrpc/connect";
import { CorralError } from "../../base/errors.ts";
import {
  type PipelineRun as PbRun,
  PipelineRunEventType,
  PipelineRunSchema,
  PipelineRunState,
  type PipelineRunSummary,
  PipelineRunSummarySchema,
  type PipelineRunsService,
  type WatchPipelineRunsResponse,
  WatchPipelineRunsResponseSchema,
} from "../../gen/corral/v1/pipelines_pb.ts";
import type { PipelineEvent, PipelineManager, PipelineView } from "../../pipelines/manager.ts";
import type { PipelineRun, RunState } from "../../pipelines/run.ts";

const stateOf: Record<RunState, PipelineRunState> = {
  starting: PipelineRunState.STARTING,
  running: PipelineRunState.RUNNING,
  restarting: PipelineRunState.RESTARTING,
  succeeded: PipelineRunState.SUCCEEDED,
  failed: PipelineRunState.FAILED,
  stopped: PipelineRunState.STOPPED,
};

export function toPbRun(pipelineId: string, run: PipelineRun): PbRun {
  return create(PipelineRunSchema, {
    runId: run.id,
    pipelineId,
    state: stateOf[run.state],
    exitReason: run.live ? "" : run.exitReason,
    ...(run.exitCode === undefined ? {} : { exitCode: run.exitCode }),
    restarts: run.restarts,
    startedAt: timestampFromMs(run.startedAt),
    ...(run.finishedAt === undefined ? {} : { finishedAt: timestampFromMs(run.finishedAt) }),
    ...(run.cpuPin === undefined ? {} : { cpuPin: run.cpuPin }),
    endpoints: run.endpoints.map((e) => ({ ...e })),
  });
}

function summaryOf(manager: PipelineManager, view: PipelineView): PipelineRunSummary {
  const run = manager.latestRun(view.id);
  const policy = view.restartPolicy;
  return create(PipelineRunSummarySchema, {
    pipelineId: view.id,
    name: view.name,
    started: view.started,
    compatible: view.compatible,
    startup: view.startup,
    restartPolicy: policy.kind === "never" ? "never" : `${policy.kind}(max ${policy.maxRestarts})`,
    ...(run === undefined ? {} : { run: toPbRun(view.id, run) }),
  });
}

/** Every pipeline of the node with its latest run. */
export function listPipelineRuns(manager: PipelineManager): PipelineRunSummary[] {
  return manager.list().map((view) => summaryOf(manager, view));
}

/** corral.v1.PipelineRunsService for one node's pipelines (the node is chosen before this). */
export function localPipelineRunsService(manager: PipelineManager): ServiceImpl<typeof PipelineRunsService> {
  return {
    listPipelines: () => ({ pipelines: listPipelineRuns(manager) }),
    getRun: (req) => {
      const { pipeline, run } = manager.run(req.runId);
      return { pipeline: summaryOf(manager, pipeline), run: toPbRun(pipeline.id, run) };
    },
    watchPipelines: (_req, ctx) => watch(manager, ctx),
  };
}

/** Snapshot, SYNCED, then every change; a reader too slow for 1 000 queued events is ended. */
async function* watch(
  manager: PipelineManager,
  ctx: HandlerContext,
): AsyncGenerator<WatchPipelineRunsResponse> {
  const queue: PipelineEvent[] = [];
  let wake: (() => void) | undefined;
  let overflow = false;
  const unsubscribe = manager.subscribe((event) => {
    if (queue.length >= 1000) overflow = true;
    else queue.push(event);
    wake?.();
  });
  const onAbort = () => wake?.();
  ctx.signal.addEventListener("abort", onAbort);
  try {
    for (const view of manager.list())
      yield create(WatchPipelineRunsResponseSchema, {
        type: PipelineRunEventType.SNAPSHOT,
        pipeline: summaryOf(manager, view),
      });
    yield create(WatchPipelineRunsResponseSchema, { type: PipelineRunEventType.SYNCED });
    while (!ctx.signal.aborted) {
      const event = queue.shift();
      if (event === undefined) {
        if (overflow) throw new CorralError("RESOURCE_EXHAUSTED", "pipeline watcher fell too far behind");
        await new Promise<void>((resolve) => {
          wake = resolve;
        });
        wake = undefined;
        continue;
      }
      yield create(WatchPipelineRunsResponseSchema, {
        type: event.type === "delete" ? PipelineRunEventType.DELETED : PipelineRunEventType.PUT,
        pipeline:
          event.type === "delete"
            ? create(PipelineRunSummarySchema, {
                pipelineId: event.pipeline.id,
                name: event.pipeline.name,
                compatible: event.pipeline.compatible,
                startup: event.pipeline.startup,
              })
            : summaryOf(manager, event.pipeline),
      });
    }
  } finally {
    unsubscribe();
    ctx.signal.removeEventListener("abort", onAbort);
  }
}
