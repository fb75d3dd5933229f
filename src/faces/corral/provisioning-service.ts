import type { MessageInitShape } from "@bufbuild/protobuf";
import { timestampFromMs } from "@bufbuild/protobuf/wkt";
import type { HandlerContext, ServiceImpl } from "@connectrpc/connect";
import type { EventFeed } from "../../core/events/event-feed.ts";
import type { JobView, ProvisioningEngine } from "../../core/provisioning/provisioning-engine.ts";
import {
  isFinished,
  type NodeRunRecord,
  parseJobId,
  type RunStatus,
  type StepRecord,
} from "../../core/provisioning/provisioning-job.ts";
import { summarizeStep } from "../../core/provisioning/provisioning-plan.ts";
import {
  type JobNodeSchema,
  type JobSchema,
  type JobStepSchema,
  type ProvisioningService,
  RunStatus as RunStatusMessage,
  type WatchJobResponseSchema,
} from "../../gen/corral/v1/provisioning_pb.ts";
import { principalOf } from "../../rpc/principal-context.ts";
import { describePrincipal } from "../../security/principal.ts";
import { stepStatusToWire } from "../../wire/provisioning-steps.ts";

type Impl = ServiceImpl<typeof ProvisioningService>;

const runStatusToWire: Readonly<Record<RunStatus, RunStatusMessage>> = {
  queued: RunStatusMessage.QUEUED,
  running: RunStatusMessage.RUNNING,
  succeeded: RunStatusMessage.SUCCEEDED,
  failed: RunStatusMessage.FAILED,
  cancelled: RunStatusMessage.CANCELLED,
};

const time = (ms: number | undefined) => (ms === undefined ? undefined : timestampFromMs(ms));

function stepToMessage(step: StepRecord, withOutput: boolean): MessageInitShape<typeof JobStepSchema> {
  return {
    index: step.index,
    name: step.name,
    kind: step.kind,
    status: stepStatusToWire(step.status),
    message: step.message,
    output: withOutput ? step.output : "",
    outputTruncated: step.outputTruncated,
    exitCode: step.exitCode,
    startedAt: time(step.startedAt),
    finishedAt: time(step.finishedAt),
    description: step.description,
  };
}

function nodeToMessage(run: NodeRunRecord, withSteps: boolean): MessageInitShape<typeof JobNodeSchema> {
  return {
    nodeId: run.nodeId,
    nodeName: run.nodeName,
    status: runStatusToWire[run.status],
    message: run.message,
    attempt: run.attempt,
    startedAt: time(run.startedAt),
    finishedAt: time(run.finishedAt),
    steps: withSteps ? run.steps.map((step) => stepToMessage(step, true)) : [],
  };
}

export function jobToMessage(view: JobView, withSteps = true): MessageInitShape<typeof JobSchema> {
  const job = view.job;
  return {
    id: job.id,
    plan: job.plan,
    planVersion: job.planVersion,
    parameters: job.parameters,
    dryRun: job.dryRun,
    concurrency: job.concurrency,
    status: runStatusToWire[job.status],
    message: job.message,
    createdBy: job.createdBy,
    createdAt: time(job.createdAt),
    startedAt: time(job.startedAt),
    finishedAt: time(job.finishedAt),
    attempt: job.attempt,
    nodes: view.nodes.map((run) => nodeToMessage(run, withSteps)),
    revision: BigInt(view.revision),
  };
}

const caller = (ctx: HandlerContext) => describePrincipal(principalOf(ctx));

/** What the provisioning face touches: the dispatcher, and the feed for watches. */
export interface ProvisioningServiceDeps {
  readonly provisioning: ProvisioningEngine;
  readonly feed: EventFeed;
}

/** corral.v1.ProvisioningService: the CLI's `corral provision …`, over the dispatcher. */
export function provisioningService({ provisioning, feed }: ProvisioningServiceDeps): Partial<Impl> {
  return {
    async listPlans() {
      const catalog = await provisioning.listPlans();
      return {
        plans: catalog.plans.map((plan) => ({
          name: plan.name,
          version: plan.version,
          description: plan.description,
          source: plan.source,
          parameters: plan.parameters.map((p) => ({
            name: p.name,
            required: p.required,
            defaultValue: p.default ?? "",
            hasDefault: p.default !== undefined,
            pattern: p.pattern ?? "",
            description: p.description,
            list: p.list,
            secret: p.secret,
          })),
          steps: plan.steps.map(summarizeStep),
        })),
        problems: [...catalog.problems],
      };
    },

    async runPlan(request, ctx) {
      const view = await provisioning.runPlan({
        plan: request.plan,
        nodes: request.nodes,
        all: request.all,
        selector: request.selector,
        parameters: request.parameters,
        dryRun: request.dryRun,
        concurrency: request.concurrency,
        createdBy: caller(ctx),
      });
      return { job: jobToMessage(view) };
    },

    async getJob(request) {
      return { job: jobToMessage(await provisioning.getJob(request.jobId)) };
    },

    async listJobs(request) {
      const limit = request.limit <= 0 ? 50 : Math.min(request.limit, 1_000);
      const views = await provisioning.listJobs(limit);
      return { jobs: views.map((view) => jobToMessage(view, false)) };
    },

    async retryJob(request, ctx) {
      return { job: jobToMessage(await provisioning.retryJob(request.jobId, caller(ctx))) };
    },

    async cancelJob(request, ctx) {
      return { job: jobToMessage(await provisioning.cancelJob(request.jobId, caller(ctx))) };
    },

    async *watchJob(request, ctx) {
      const id = parseJobId(request.jobId);
      const view = await provisioning.getJob(id);
      yield { revision: BigInt(view.revision), event: { case: "snapshot", value: jobToMessage(view) } };
      if (isFinished(view.job.status)) return;
      const known = new Map(view.nodes.map((run) => [run.nodeId, run]));
      let jobStatus = view.job.status;
      for await (const event of feed.watch({
        fromRevision: view.revision + 1,
        kinds: ["provisioning"],
        signal: ctx.signal,
      })) {
        if (event.jobId !== id) continue;
        const revision = BigInt(event.revision);
        if (event.run !== undefined) {
          for (const change of runChanges(known.get(event.run.nodeId), event.run))
            yield { revision, event: change } satisfies MessageInitShape<typeof WatchJobResponseSchema>;
          known.set(event.run.nodeId, event.run);
        }
        const job = event.job;
        if (job !== undefined) {
          if (job.status !== jobStatus) {
            jobStatus = job.status;
            yield {
              revision,
              event: {
                case: "job",
                value: { status: runStatusToWire[job.status], message: job.message, attempt: job.attempt },
              },
            };
          }
          if (isFinished(job.status)) return;
        }
      }
    },
  };
}

type WatchEvent = NonNullable<MessageInitShape<typeof WatchJobResponseSchema>["event"]>;

/** What changed between two versions of a node's record: its status, then each step that moved or printed. */
function runChanges(before: NodeRunRecord | undefined, after: NodeRunRecord): WatchEvent[] {
  const changes: WatchEvent[] = [];
  if (before === undefined || before.status !== after.status || before.attempt !== after.attempt) {
    changes.push({
      case: "node",
      value: {
        nodeId: after.nodeId,
        nodeName: after.nodeName,
        status: runStatusToWire[after.status],
        message: after.message,
        attempt: after.attempt,
      },
    });
  }
  const newAttempt = before === undefined || before.attempt !== after.attempt;
  for (const step of after.steps) {
    const old = newAttempt ? undefined : before?.steps[step.index];
    const oldOutput = old?.output ?? "";
    const appended = step.output.startsWith(oldOutput) ? step.output.slice(oldOutput.length) : step.output;
    const moved =
      old === undefined
        ? step.status !== "pending"
        : old.status !== step.status || old.message !== step.message;
    if (!moved && appended === "") continue;
    changes.push({
      case: "step",
      value: {
        nodeId: after.nodeId,
        nodeName: after.nodeName,
        step: stepToMessage(step, true),
        outputAppended: appended,
      },
    });
  }
  return changes;
}
