import { create } from "@bufbuild/protobuf";
import { timestampFromMs } from "@bufbuild/protobuf/wkt";
import type { HandlerContext, ServiceImpl } from "@connectrpc/connect";
import { CorralError } from "../../base/errors.ts";
import { CollectionSchema, MetricSchema } from "../../gen/metrics_pb.ts";
import {
  ConfigCompatability,
  KpiSchema,
  LogStreamMessagesSchema,
  type RestartPolicy as PbRestartPolicy,
  type Pipeline,
  PipelineSchema,
  type PipelinesService,
  RestartPolicySchema,
  StartupPolicySchema,
  type StreamPipelinesEvent,
  StreamPipelinesEventSchema,
  TelemetrySampleSchema,
} from "../../gen/pipelines_pb.ts";
import {
  defaultInstructionsTimeout,
  type PipelineEvent,
  type PipelineManager,
  type PipelineSettings,
  type PipelineView,
} from "../../pipelines/manager.ts";
import type { RestartPolicy } from "../../pipelines/run.ts";
import { logBatch, logBatchLines } from "./log-batch.ts";

export function toPbPipeline(view: PipelineView): Pipeline {
  return create(PipelineSchema, {
    id: view.id,
    name: view.name,
    started: view.started,
    optionalCurrentRun:
      view.currentRun === undefined ? { case: undefined } : { case: "currentRun", value: view.currentRun },
    jsonConfig: view.jsonConfig,
    configCompatability: view.compatible ? ConfigCompatability.COMPATIBLE : ConfigCompatability.INCOMPATIBLE,
    restartPolicy: toPbRestart(view.restartPolicy),
    startupPolicy: create(StartupPolicySchema, {
      startupPolicy: view.startup === "auto" ? { case: "auto", value: {} } : { case: "manual", value: {} },
    }),
    defaultLoggingLevel: view.defaultLoggingLevel,
    optionalNodeReferenceId:
      view.nodeReferenceId === undefined
        ? { case: undefined }
        : { case: "nodeReferenceId", value: view.nodeReferenceId },
    instructionsTimeout: view.instructionsTimeout,
    optionalCpuPin: view.cpuPin === undefined ? { case: undefined } : { case: "cpuPin", value: view.cpuPin },
    performanceMode: view.performanceMode,
  });
}

function toPbRestart(policy: RestartPolicy): PbRestartPolicy {
  return create(RestartPolicySchema, {
    restartPolicy:
      policy.kind === "always"
        ? { case: "always", value: { maxRestarts: policy.maxRestarts } }
        : policy.kind === "on_failure"
          ? { case: "onFailure", value: { maxRestarts: policy.maxRestarts } }
          : { case: "never", value: {} },
  });
}

function fromPbRestart(policy: PbRestartPolicy | undefined): RestartPolicy {
  const p = policy?.restartPolicy;
  if (p?.case === "always") return { kind: "always", maxRestarts: p.value.maxRestarts };
  if (p?.case === "onFailure") return { kind: "on_failure", maxRestarts: p.value.maxRestarts };
  return { kind: "never", maxRestarts: 0 };
}

interface SettingsInput {
  name: string;
  jsonConfig: string;
  restartPolicy?: PbRestartPolicy | undefined;
  startupPolicy?: { startupPolicy: { case: string | undefined } } | undefined;
  defaultLoggingLevel: number | undefined;
  instructionsTimeout: number | undefined;
  cpuPin: number | undefined;
  performanceMode: boolean | undefined;
  nodeReferenceId: string | undefined;
}

function settingsOf(input: SettingsInput): PipelineSettings {
  return {
    name: input.name,
    jsonConfig: input.jsonConfig,
    restartPolicy: fromPbRestart(input.restartPolicy),
    startup: input.startupPolicy?.startupPolicy.case === "auto" ? "auto" : "manual",
    defaultLoggingLevel: input.defaultLoggingLevel ?? 0,
    instructionsTimeout:
      input.instructionsTimeout === undefined || input.instructionsTimeout === 0
        ? defaultInstructionsTimeout
        : input.instructionsTimeout,
    performanceMode: input.performanceMode ?? true,
    ...(input.cpuPin === undefined ? {} : { cpuPin: input.cpuPin }),
    ...(input.nodeReferenceId === undefined ? {} : { nodeReferenceId: input.nodeReferenceId }),
  };
}

const oneof = <T>(o: { case: string | undefined; value?: unknown }): T | undefined =>
  o.case === undefined ? undefined : (o.value as T);

const levelOf = { trace: 1, debug: 1, info: 2, warn: 3, error: 4, fatal: 5 } as const;

/**
 * NanoPing's PipelinesService on one node, over its PipelineManager. Which node a call is for is
 * decided before this (relayToNode on the controller, the agent's own routing on its local API).
 */
export function localPipelinesService(
  manager: PipelineManager,
): Partial<ServiceImpl<typeof PipelinesService>> {
  return {
    getPipelines: () => ({ pipelines: manager.list().map(toPbPipeline) }),
    getPipelineById: (req) => ({ pipeline: toPbPipeline(manager.get(req.id)) }),
    getPipelineByName: (req) => ({ pipeline: toPbPipeline(manager.getByName(req.name)) }),
    getPipelineByRunId: (req) => ({ pipeline: toPbPipeline(manager.run(req.id).pipeline) }),
    createPipeline: async (req) => {
      const view = await manager.create(
        settingsOf({
          name: req.name,
          jsonConfig: req.jsonConfig,
          restartPolicy: req.restartPolicy,
          startupPolicy: req.startupPolicy,
          defaultLoggingLevel: oneof<number>(req.optionalDefaultLoggingLevel),
          instructionsTimeout: oneof<number>(req.optionalInstructionsTimeout),
          cpuPin: oneof<number>(req.optionalCpuPin),
          performanceMode: oneof<boolean>(req.optionalPerformanceMode),
          nodeReferenceId: oneof<string>(req.optionalNodeReferenceId),
        }),
      );
      return { pipeline: toPbPipeline(view) };
    },
    updatePipeline: async (req) => {
      const view = await manager.update(
        req.id,
        settingsOf({
          name: req.name,
          jsonConfig: req.jsonConfig,
          restartPolicy: req.restartPolicy,
          startupPolicy: req.startupPolicy,
          defaultLoggingLevel: req.defaultLoggingLevel,
          instructionsTimeout: req.instructionsTimeout,
          cpuPin: oneof<number>(req.optionalCpuPin),
          performanceMode: oneof<boolean>(req.optionalPerformanceMode),
          nodeReferenceId: oneof<string>(req.optionalNodeReferenceId),
        }),
        req.forceRestart,
      );
      return { pipeline: toPbPipeline(view) };
    },
    deletePipeline: async (req) => {
      await manager.delete(req.id);
      return {};
    },
    startPipeline: async (req) => {
      const which = req.pipelineIdentifier;
      if (which.case === undefined)
        throw CorralError.invalidArgument("pipeline_identifier", "give id or name");
      const id = which.case === "id" ? which.value : manager.getByName(which.value).id;
      return { runId: await manager.start(id) };
    },
    stopPipeline: async (req) => {
      const which = req.pipelineIdentifier;
      if (which.case === undefined)
        throw CorralError.invalidArgument("pipeline_identifier", "give id, name or run_id");
      await manager.stop({ [which.case]: which.value });
      return {};
    },
    streamPipelines: (_req, ctx) => streamEvents(manager, ctx),
    openLogStream: async function* (req, ctx) {
      const { pipeline, run } = manager.run(req.runId);
      const minimum = pipeline.defaultLoggingLevel;
      const lines = req.options?.optionalLines.case === "lines" ? req.options.optionalLines.value : 1000n;
      const tailCount = Number(lines > 100_000n ? 100_000n : lines < 0n ? 0n : lines);
      const follow = run.logs.followBatches({}, ctx.signal, logBatchLines);
      const toLine = (entry: { timestamp: number; level: keyof typeof levelOf; message: string }) => ({
        timestamp: entry.timestamp,
        level: levelOf[entry.level],
        message: entry.message,
        data: "",
      });
      const keep = (level: keyof typeof levelOf) => levelOf[level] >= minimum;
      const tail = (await run.logs.tail(tailCount, {})).filter((e) => keep(e.level));
      if (tail.length > 0) yield logBatch(LogStreamMessagesSchema, tail.map(toLine));
      for await (const batch of follow) {
        const lines = batch.filter((e) => keep(e.level)).map(toLine);
        if (lines.length > 0) yield logBatch(LogStreamMessagesSchema, lines);
      }
    },
    openTelemetryStream: async function* (req, ctx) {
      const { run } = manager.run(req.runId);
      while (!ctx.signal.aborted) {
        yield telemetrySample(run.stats, run.restarts, run.state);
        if (!run.live) return;
        await new Promise<void>((resolve) => {
          const timer = setTimeout(done, 1000);
          function done() {
            clearTimeout(timer);
            ctx.signal.removeEventListener("abort", done);
            resolve();
          }
          ctx.signal.addEventListener("abort", done, { once: true });
        });
      }
    },
  };
}

function telemetrySample(
  stats: Readonly<Record<string, Readonly<Record<string, number | string>>>>,
  restarts: number,
  state: string,
) {
  const collections = [];
  const kpis = [
    create(KpiSchema, { id: "run", field: "state", value: { case: "stringValue", value: state } }),
  ];
  kpis.push(
    create(KpiSchema, {
      id: "run",
      field: "restarts",
      value: { case: "uint64Value", value: BigInt(restarts) },
    }),
  );
  for (const [block, values] of Object.entries(stats)) {
    const metrics: Record<string, ReturnType<typeof create<typeof MetricSchema>>> = {};
    for (const [field, value] of Object.entries(values)) {
      if (typeof value === "string") {
        metrics[field] = create(MetricSchema, {
          type: { case: "constant", value: { value: { case: "string", value }, description: field } },
        });
        continue;
      }
      const integral = Number.isInteger(value) && value >= 0;
      metrics[field] = create(MetricSchema, {
        type: integral
          ? {
              case: "uint64",
              value: { optionalValue: { case: "value", value: BigInt(value) }, description: field, kind: 1 },
            }
          : { case: "float64", value: { optionalValue: { case: "value", value }, description: field } },
      });
      kpis.push(
        create(KpiSchema, {
          id: block,
          field,
          value: integral ? { case: "uint64Value", value: BigInt(value) } : { case: "float64Value", value },
        }),
      );
    }
    collections.push(create(CollectionSchema, { path: block, metrics }));
  }
  return create(TelemetrySampleSchema, {
    metricCollections: collections,
    kpis,
    timestamp: timestampFromMs(Date.now()),
  });
}

/** create/update/delete as they happen; a reader too slow for 1 000 queued events is ended. */
async function* streamEvents(
  manager: PipelineManager,
  ctx: HandlerContext,
): AsyncGenerator<StreamPipelinesEvent> {
  const queue: PipelineEvent[] = [];
  let wake: (() => void) | undefined;
  let overflow = false;
  const unsubscribe = manager.subscribe((event) => {
    if (event.type === "run") return;
    if (queue.length >= 1000) overflow = true;
    else queue.push(event);
    wake?.();
  });
  const onAbort = () => wake?.();
  ctx.signal.addEventListener("abort", onAbort);
  try {
    while (!ctx.signal.aborted) {
      const event = queue.shift();
      if (event === undefined) {
        if (overflow)
          throw new CorralError("RESOURCE_EXHAUSTED", "pipeline event reader fell too far behind");
        await new Promise<void>((resolve) => {
          wake = resolve;
        });
        wake = undefined;
        continue;
      }
      const pipeline = toPbPipeline(event.pipeline);
      if (event.type === "run") continue;
      yield create(StreamPipelinesEventSchema, { event: { case: event.type, value: { pipeline } } });
    }
  } finally {
    unsubscribe();
    ctx.signal.removeEventListener("abort", onAbort);
  }
}
