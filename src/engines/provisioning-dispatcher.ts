import type { Clock } from "../base/clock.ts";
import { parseDuration } from "../base/duration.ts";
import { CorralError } from "../base/errors.ts";
import type { NodeRecord } from "../core/nodes/node.ts";
import type { NodeRegistry } from "../core/nodes/node-registry.ts";
import type {
  JobView,
  PlanCatalog,
  ProvisioningEngine,
  RunPlanInput,
} from "../core/provisioning/provisioning-engine.ts";
import {
  applyStepUpdate,
  decodeJob,
  decodeNodeRun,
  dryRunNodeRun,
  encodeJob,
  encodeNodeRun,
  encodeNodeRunWithin,
  finishNodeRun,
  interruptedMessage,
  isFinished,
  type JobRecord,
  type JobTarget,
  jobKey,
  jobPlanKey,
  jobPrefix,
  jobSequenceKey,
  jobStatusOf,
  jobSummary,
  type NodeRunRecord,
  nodeRunKey,
  nodeRunPrefix,
  parseJobId,
  queuedNodeRun,
  retryTargets,
  startNodeRun,
} from "../core/provisioning/provisioning-job.ts";
import type { Plan } from "../core/provisioning/provisioning-plan.ts";
import { describeStep, type StepEvent, type StepSpec } from "../core/provisioning/provisioning-step.ts";
import {
  type Builtins,
  listItems,
  maskedValue,
  maskSecrets,
  renderSteps,
  resolveParameters,
} from "../core/provisioning/provisioning-template.ts";
import { defaults } from "../defaults.ts";
import type { Logger } from "../observability/logger.ts";
import type { Store } from "../store/store.ts";
import type { Op } from "../store/types.ts";

/** Where the dispatcher reads plans from; loaded on each use, so new plan files count at once. */
export interface PlanSource {
  load(): Promise<PlanCatalog & { resolve(ref: string): Plan }>;
}

/** Runs a node's steps and reports what happens: on its agent, or in this process for the controller's node. */
export type NodeStepRunner = (
  node: NodeRecord,
  steps: readonly StepSpec[],
  run: { jobId: string; signal: AbortSignal; maxOutputBytes: number },
) => AsyncIterable<StepEvent>;

export interface DispatcherOptions {
  readonly store: Store;
  readonly registry: NodeRegistry;
  readonly clock: Clock;
  readonly logger: Logger;
  readonly clusterId: string;
  readonly controllerNodeId: string;
  readonly plans: PlanSource;
  /** Steps of agents' nodes. */
  readonly remote: NodeStepRunner;
  /** Steps of the controller's own node. */
  readonly local: NodeStepRunner;
  /** Nodes of one job provisioned at once when the request does not say. */
  readonly concurrency?: number;
  readonly maxOutputBytes?: number;
  readonly outputFlushMs?: number;
  readonly keepJobs?: number;
}

/** Why a job's running nodes stop: cancelled by someone, or cut off by the controller stopping. */
interface StopReason {
  readonly status: "cancelled" | "failed";
  readonly message: string;
}

interface ActiveJob {
  readonly abort: AbortController;
  done: Promise<void>;
}

const limits = {
  maxTimeoutMs: parseDuration(defaults.provisioning.maxStepTimeout),
  maxFileContentBytes: defaults.provisioning.maxFileContentBytes,
  maxParameterBytes: defaults.provisioning.maxParameterBytes,
};
/** A txn holds at most 128 ops (etcd's limit); batches stay below it. */
const opsPerTxn = 100;
/** Below the store's 1 MiB per value: a node's record trims its largest outputs to stay under this. */
const maxRecordBytes = 900 * 1024;

/** What a job keeps apart from its record: the plan it runs and the real values of its parameters. */
interface JobPlan {
  readonly plan: Plan;
  readonly parameters: Record<string, string>;
}

/**
 * The provisioning engine on the controller: turns RunPlan into a job in the store, runs the job's
 * nodes (at most `concurrency` at once, one job at a time per node) by streaming their steps from the
 * agents, and writes every step's status and output into the store as it happens — so GetJob,
 * WatchJob and `corral provision status` read one truth, which survives a controller restart.
 */
export class ProvisioningDispatcher implements ProvisioningEngine {
  readonly #options: DispatcherOptions;
  readonly #store: Store;
  readonly #clock: Clock;
  readonly #logger: Logger;
  readonly #active = new Map<string, ActiveJob>();
  readonly #nodeLocks = new Map<string, Promise<void>>();
  readonly #maxOutputBytes: number;
  readonly #flushMs: number;
  #closed = false;

  constructor(options: DispatcherOptions) {
    this.#options = options;
    this.#store = options.store;
    this.#clock = options.clock;
    this.#logger = options.logger.child({ component: "provisioning" });
    this.#maxOutputBytes = options.maxOutputBytes ?? defaults.provisioning.maxOutputBytes;
    this.#flushMs = options.outputFlushMs ?? parseDuration(defaults.provisioning.outputFlushInterval);
  }

  /** Closes the books of jobs a previous controller left running (it stopped or died under them). */
  /** Loads the plans; `recover: false` (a controller that does not lead) leaves unfinished jobs alone. */
  async start({ recover = true }: { recover?: boolean } = {}): Promise<void> {
    if (recover) await this.recoverInterrupted();
    const catalog = await this.#options.plans.load();
    for (const problem of catalog.problems) this.#logger.error({ file: problem.file }, problem.message);
  }

  /**
   * Marks jobs left unfinished by a stopped controller as interrupted (leader work). With several
   * controllers this also hits jobs another live controller is running: jobs carry no owner yet.
   */
  async recoverInterrupted(): Promise<void> {
    const { items } = await this.#store.list(jobPrefix);
    for (const kv of items) {
      const job = decodeJob(kv.value);
      if (isFinished(job.status)) continue;
      await this.#closeInterrupted(job);
      this.#logger.warn(
        { job: job.id },
        "provisioning job was interrupted by a controller stop; marked failed",
      );
    }
  }

  /** Stops running jobs; their running nodes are recorded as interrupted, so a retry picks them up. */
  async close(): Promise<void> {
    this.#closed = true;
    const reason: StopReason = { status: "failed", message: interruptedMessage };
    for (const active of this.#active.values()) active.abort.abort(reason);
    await Promise.all([...this.#active.values()].map((active) => active.done));
  }

  listPlans(): Promise<PlanCatalog> {
    return this.#options.plans.load();
  }

  async runPlan(input: RunPlanInput): Promise<JobView> {
    this.#assertOpen();
    const plan = (await this.#options.plans.load()).resolve(input.plan);
    const parameters = resolveParameters(plan, input.parameters, limits);
    const concurrency = input.concurrency || (this.#options.concurrency ?? defaults.provisioning.concurrency);
    if (
      !Number.isInteger(concurrency) ||
      concurrency < 1 ||
      concurrency > defaults.provisioning.maxConcurrency
    )
      throw CorralError.invalidArgument(
        "concurrency",
        `must be between 1 and ${defaults.provisioning.maxConcurrency}, got ${concurrency}`,
      );
    const nodes = await this.#resolveTargets(input);
    // Every node's steps are filled in and checked now, so a bad parameter fails the request, not the rollout.
    for (const node of nodes) this.#render(plan, parameters, node, "0");

    const id = await this.#nextJobId();
    const now = this.#clock.now();
    const job: JobRecord = {
      id,
      plan: plan.name,
      planVersion: plan.version,
      // Secret values stay in the job's plan record, which no API returns.
      parameters: maskSecrets(plan, parameters),
      dryRun: input.dryRun,
      concurrency,
      targets: nodes.map((node) => ({ nodeId: node.id, nodeName: node.name })),
      steps: plan.steps.map((step) => ({ name: step.name, kind: step.kind })),
      status: input.dryRun ? "succeeded" : "queued",
      message: input.dryRun ? "dry run: nothing was run" : "",
      createdBy: input.createdBy,
      createdAt: now,
      ...(input.dryRun ? { startedAt: now, finishedAt: now } : {}),
      attempt: input.dryRun ? 0 : 1,
    };
    const planText = JSON.stringify({ plan, parameters } satisfies JobPlan);
    if (Buffer.byteLength(planText) > 900 * 1024)
      throw new CorralError("RESOURCE_EXHAUSTED", `plan ${plan.name} is too large to record with a job`);
    await this.#commitAll([
      { type: "put", key: jobPlanKey(id), value: planText },
      { type: "put", key: jobKey(id), value: encodeJob(job) },
    ]);
    if (input.dryRun) {
      const byId = new Map(nodes.map((node) => [node.id, node]));
      const runs = job.targets.map((target) => {
        const node = byId.get(target.nodeId);
        const descriptions = node === undefined ? [] : this.#describe(plan, parameters, node, id);
        return dryRunNodeRun(job, target, descriptions, now);
      });
      await this.#commitAll(
        runs.map((run) => ({ type: "put", key: nodeRunKey(id, run.nodeId), value: encodeNodeRun(run) })),
      );
    } else {
      this.#execute(job, { plan, parameters }, job.targets);
    }
    this.#logger.info(
      {
        job: id,
        plan: `${plan.name}@${plan.version}`,
        nodes: job.targets.length,
        dryRun: job.dryRun,
        by: input.createdBy,
      },
      "provisioning job created",
    );
    await this.#prune().catch((error: unknown) =>
      this.#logger.warn({ err: error }, "pruning old jobs failed"),
    );
    return this.getJob(id);
  }

  async getJob(jobId: string): Promise<JobView> {
    const id = parseJobId(jobId);
    const { items, revision } = await this.#store.list(nodeRunPrefix(id));
    const job = await this.#readJob(id);
    const runs = new Map(items.map((kv) => [decodeNodeRun(kv.value).nodeId, decodeNodeRun(kv.value)]));
    return {
      job,
      nodes: job.targets.map((target) => runs.get(target.nodeId) ?? queuedNodeRun(job, target)),
      revision,
    };
  }

  async listJobs(limit: number): Promise<JobView[]> {
    const { items } = await this.#store.list(jobPrefix);
    const newest = items.slice(-Math.max(1, limit)).reverse();
    return Promise.all(newest.map((kv) => this.getJob(decodeJob(kv.value).id)));
  }

  async retryJob(jobId: string, by: string): Promise<JobView> {
    this.#assertOpen();
    const view = await this.getJob(jobId);
    const id = view.job.id;
    if (this.#active.has(id)) throw new CorralError("FAILED_PRECONDITION", `job ${id} is still running`);
    const targets = retryTargets(view.job, view.nodes);
    const plan = await this.#readPlan(id);
    const job = await this.#updateJob(id, (current) => {
      const { finishedAt: _finished, ...rest } = current;
      return {
        ...rest,
        status: "queued",
        attempt: current.attempt + 1,
        message: `retry ${current.attempt + 1} by ${by}: ${targets.length} node${targets.length === 1 ? "" : "s"} (${targets.map((t) => t.nodeName).join(", ")})`,
      };
    });
    this.#logger.info({ job: id, nodes: targets.length, by }, "provisioning job retried");
    this.#execute(job, plan, targets);
    return this.getJob(id);
  }

  async cancelJob(jobId: string, by: string): Promise<JobView> {
    const view = await this.getJob(jobId);
    const id = view.job.id;
    const active = this.#active.get(id);
    if (active === undefined) {
      if (isFinished(view.job.status))
        throw new CorralError(
          "FAILED_PRECONDITION",
          `job ${id} has finished (${view.job.status}); nothing to cancel`,
        );
      // Not running here (a record left by another controller): close its books.
      await this.#closeInterrupted(view.job, { status: "cancelled", message: `cancelled by ${by}` });
      return this.getJob(id);
    }
    active.abort.abort({ status: "cancelled", message: `cancelled by ${by}` } satisfies StopReason);
    await active.done;
    this.#logger.info({ job: id, by }, "provisioning job cancelled");
    return this.getJob(id);
  }

  // ------------------------------------------------------------------------------------- running

  #execute(job: JobRecord, plan: JobPlan, targets: readonly JobTarget[]): void {
    const abort = new AbortController();
    const active: ActiveJob = { abort, done: Promise.resolve() };
    this.#active.set(job.id, active);
    active.done = (async () => {
      try {
        await this.#updateJob(job.id, (current) => ({
          ...current,
          status: "running",
          startedAt: current.startedAt ?? this.#clock.now(),
        }));
        let next = 0;
        const worker = async () => {
          for (let target = targets[next++]; target !== undefined; target = targets[next++]) {
            await this.#runNode(job, plan, target, abort.signal);
          }
        };
        await Promise.all(Array.from({ length: Math.min(job.concurrency, targets.length) }, worker));
        await this.#finishJob(job.id);
      } catch (error) {
        this.#logger.error({ err: error, job: job.id }, "provisioning job failed to run");
        await this.#finishJob(job.id, (error as Error).message).catch(() => undefined);
      } finally {
        this.#active.delete(job.id);
      }
    })();
  }

  async #runNode(
    job: JobRecord,
    { plan, parameters }: JobPlan,
    target: JobTarget,
    signal: AbortSignal,
  ): Promise<void> {
    const key = nodeRunKey(job.id, target.nodeId);
    await this.#withNodeLock(target.nodeId, signal, async () => {
      const previous = await this.#readRun(job.id, target.nodeId);
      if (signal.aborted) {
        // Stopped before this node started: a node with an earlier attempt keeps that attempt's steps.
        const reason = stopReason(signal);
        const message =
          reason.status === "cancelled" ? `${reason.message} before this node started` : reason.message;
        const record =
          previous === undefined
            ? finishNodeRun(queuedNodeRun(job, target), this.#clock.now(), { status: reason.status, message })
            : { ...previous, status: reason.status, message };
        await this.#put(key, encodeNodeRun(record));
        return;
      }
      let node: NodeRecord;
      let steps: StepSpec[];
      try {
        node = await this.#options.registry.get(target.nodeId);
        steps = this.#render(plan, parameters, node, job.id);
      } catch (error) {
        const run = startNodeRun(job, target, previous, [], this.#clock.now());
        await this.#put(
          key,
          encodeNodeRun(
            finishNodeRun(run, this.#clock.now(), { status: "failed", message: (error as Error).message }),
          ),
        );
        return;
      }
      let run = startNodeRun(
        job,
        { nodeId: node.id, nodeName: node.name },
        previous,
        this.#describe(plan, parameters, node, job.id),
        this.#clock.now(),
      );
      const writer = new RecordWriter(this.#store, key, this.#flushMs, (error) =>
        this.#logger.warn(
          { err: error, job: job.id, node: node.name },
          "could not record provisioning progress",
        ),
      );
      await writer.put(encodeNodeRunWithin(run, maxRecordBytes));
      const log = this.#logger.child({ job: job.id, node: node.name, attempt: run.attempt });
      log.info("provisioning node started");
      let outcome: StopReason | undefined;
      try {
        const runner =
          node.id === this.#options.controllerNodeId ? this.#options.local : this.#options.remote;
        if (node.id !== this.#options.controllerNodeId && (node.address === "" || node.port === 0))
          throw new CorralError(
            "FAILED_PRECONDITION",
            `node ${node.name} has no address the controller can dial`,
          );
        for await (const event of runner(node, steps, {
          jobId: job.id,
          signal,
          maxOutputBytes: this.#maxOutputBytes,
        })) {
          const { statusChanged } = applyStepUpdate(run, event, this.#clock.now(), this.#maxOutputBytes);
          if (statusChanged) await writer.put(encodeNodeRunWithin(run, maxRecordBytes));
          else writer.later(() => encodeNodeRunWithin(run, maxRecordBytes));
        }
        if (signal.aborted) outcome = stopReason(signal);
      } catch (error) {
        outcome = signal.aborted
          ? stopReason(signal)
          : { status: "failed", message: (error as Error).message };
      }
      run = finishNodeRun(run, this.#clock.now(), outcome);
      await writer.final(encodeNodeRunWithin(run, maxRecordBytes));
      log.info({ status: run.status, message: run.message }, "provisioning node finished");
    });
  }

  async #finishJob(id: string, failure?: string): Promise<void> {
    const { items } = await this.#store.list(nodeRunPrefix(id));
    const runs = items.map((kv) => decodeNodeRun(kv.value));
    await this.#updateJob(id, (job) => {
      const status = failure === undefined ? jobStatusOf(job, runs) : "failed";
      return {
        ...job,
        status: isFinished(status) ? status : "failed",
        message: failure ?? jobSummary(job, runs),
        finishedAt: this.#clock.now(),
      };
    });
  }

  /** Records still marked running or queued become `reason` (default: interrupted), then the job finishes. */
  async #closeInterrupted(
    job: JobRecord,
    reason: StopReason = { status: "failed", message: interruptedMessage },
  ) {
    const { items } = await this.#store.list(nodeRunPrefix(job.id));
    const runs = new Map(items.map((kv) => [decodeNodeRun(kv.value).nodeId, decodeNodeRun(kv.value)]));
    const now = this.#clock.now();
    const ops: Op[] = [];
    for (const target of job.targets) {
      const run = runs.get(target.nodeId);
      if (run !== undefined && isFinished(run.status)) continue;
      const base = run ?? queuedNodeRun(job, target);
      ops.push({
        type: "put",
        key: nodeRunKey(job.id, target.nodeId),
        value: encodeNodeRun(finishNodeRun(base, now, reason)),
      });
    }
    await this.#commitAll(ops);
    await this.#finishJob(job.id);
  }

  #render(plan: Plan, parameters: Record<string, string>, node: NodeRecord, jobId: string): StepSpec[] {
    try {
      return renderSteps(plan, parameters, this.#builtins(node, jobId), limits);
    } catch (error) {
      if (error instanceof CorralError)
        throw new CorralError(error.code, `plan ${plan.name} on node ${node.name}: ${error.message}`, {
          details: { ...error.details },
        });
      throw error;
    }
  }

  /**
   * What each step does on the node, for records anyone with `viewer` may read: every secret value (and
   * each item of a secret list) is replaced by *** wherever it appears. Descriptions never hold file content.
   */
  #describe(plan: Plan, parameters: Record<string, string>, node: NodeRecord, jobId: string): string[] {
    const secrets = plan.parameters
      .filter((p) => p.secret)
      .flatMap((p) => {
        const value = parameters[p.name] ?? "";
        return p.list ? [value, ...listItems(value)] : [value];
      })
      .filter((value) => value !== "")
      .sort((a, b) => b.length - a.length);
    return renderSteps(plan, parameters, this.#builtins(node, jobId), limits).map((step) =>
      secrets.reduce((text, secret) => text.replaceAll(secret, maskedValue), describeStep(step)),
    );
  }

  #builtins(node: NodeRecord, jobId: string): Builtins {
    return {
      "node.id": node.id,
      "node.name": node.name,
      "node.address": node.address,
      "cluster.id": this.#options.clusterId,
      "job.id": jobId,
    };
  }

  async #resolveTargets(input: RunPlanInput): Promise<NodeRecord[]> {
    const selector = Object.keys(input.selector).length > 0;
    const modes = [input.nodes.length > 0, input.all, selector].filter(Boolean).length;
    if (modes !== 1)
      throw CorralError.invalidArgument("nodes", "give exactly one of: nodes, all, a label selector");
    const registry = this.#options.registry;
    if (input.nodes.length > 0) {
      const found = new Map<string, NodeRecord>();
      for (const ref of input.nodes) {
        const node = await registry.get(ref);
        if (node.status === "left" || node.status === "down" || node.status === "pending")
          throw new CorralError(
            "FAILED_PRECONDITION",
            `node ${node.name} is ${node.status}; it cannot be provisioned`,
          );
        if (node.id !== this.#options.controllerNodeId && (node.address === "" || node.port === 0))
          throw new CorralError(
            "FAILED_PRECONDITION",
            `node ${node.name} has no address the controller can dial`,
          );
        found.set(node.id, node);
      }
      return [...found.values()];
    }
    const { nodes } = await registry.list({
      statuses: ["ready"],
      ...(selector ? { labels: { ...input.selector } } : {}),
    });
    const agents = nodes.filter((node) => node.role === "agent" && node.address !== "" && node.port !== 0);
    if (agents.length === 0) {
      const what = selector
        ? `carries ${Object.entries(input.selector)
            .map(([k, v]) => `${k}=${v}`)
            .join(",")}`
        : "is in the cluster";
      throw new CorralError("FAILED_PRECONDITION", `no ready agent ${what}`);
    }
    return agents;
  }

  // ------------------------------------------------------------------------------------- storage

  async #readJob(id: string): Promise<JobRecord> {
    const kv = await this.#store.get(jobKey(id));
    if (kv === undefined) throw CorralError.notFound("job", id);
    return decodeJob(kv.value);
  }

  async #readRun(jobId: string, nodeId: string): Promise<NodeRunRecord | undefined> {
    const kv = await this.#store.get(nodeRunKey(jobId, nodeId));
    return kv === undefined ? undefined : decodeNodeRun(kv.value);
  }

  async #readPlan(id: string): Promise<JobPlan> {
    const kv = await this.#store.get(jobPlanKey(id));
    if (kv === undefined)
      throw new CorralError("FAILED_PRECONDITION", `job ${id} has no recorded plan to run again`);
    return JSON.parse(kv.value) as JobPlan;
  }

  async #updateJob(id: string, change: (job: JobRecord) => JobRecord): Promise<JobRecord> {
    for (let attempt = 0; attempt < 16; attempt++) {
      const kv = await this.#store.get(jobKey(id));
      if (kv === undefined) throw CorralError.notFound("job", id);
      const next = change(decodeJob(kv.value));
      const result = await this.#store.commit({
        compares: [{ key: kv.key, modRevision: kv.modRevision }],
        ops: [{ type: "put", key: kv.key, value: encodeJob(next) }],
      });
      if (result.succeeded) return next;
    }
    throw new CorralError("ABORTED", `job ${id} changed too often to update; try again`);
  }

  async #nextJobId(): Promise<string> {
    for (let attempt = 0; attempt < 32; attempt++) {
      const sequence = await this.#store.get(jobSequenceKey);
      const id = (sequence === undefined ? 0 : Number(sequence.value)) + 1;
      const result = await this.#store.commit({
        compares: [{ key: jobSequenceKey, modRevision: sequence?.modRevision ?? 0 }],
        ops: [{ type: "put", key: jobSequenceKey, value: String(id) }],
      });
      if (result.succeeded) return String(id);
    }
    throw new CorralError("ABORTED", "too many jobs created at once; try again");
  }

  async #put(key: string, value: string): Promise<void> {
    await this.#store.commit({ ops: [{ type: "put", key, value }] });
  }

  async #commitAll(ops: readonly Op[]): Promise<void> {
    for (let i = 0; i < ops.length; i += opsPerTxn)
      await this.#store.commit({ ops: ops.slice(i, i + opsPerTxn) });
  }

  /** Keeps the newest `keepJobs` finished jobs (and every unfinished one). */
  async #prune(): Promise<void> {
    const keep = this.#options.keepJobs ?? defaults.provisioning.keepJobs;
    const { items } = await this.#store.list(jobPrefix);
    const excess = items.length - keep;
    if (excess <= 0) return;
    const ops: Op[] = [];
    for (const kv of items.slice(0, excess)) {
      const job = decodeJob(kv.value);
      if (!isFinished(job.status) || this.#active.has(job.id)) continue;
      ops.push(
        { type: "delete", key: jobKey(job.id) },
        { type: "delete", key: jobPlanKey(job.id) },
        { type: "deletePrefix", prefix: nodeRunPrefix(job.id) },
      );
    }
    await this.#commitAll(ops);
  }

  /** One job at a time per node: a second job's part waits (shown queued) until the first is done. */
  async #withNodeLock(nodeId: string, signal: AbortSignal, work: () => Promise<void>): Promise<void> {
    const before = this.#nodeLocks.get(nodeId) ?? Promise.resolve();
    let release = () => {};
    const mine = new Promise<void>((resolve) => {
      release = resolve;
    });
    const chained = before.then(() => mine);
    this.#nodeLocks.set(nodeId, chained);
    try {
      // A cancelled job does not wait for another job's node to be free (its work then only records that).
      await untilSettledOrAborted(before, signal);
      await work();
    } finally {
      release();
      if (this.#nodeLocks.get(nodeId) === chained) this.#nodeLocks.delete(nodeId);
    }
  }

  #assertOpen(): void {
    if (this.#closed) throw new CorralError("UNAVAILABLE", "the controller is shutting down");
  }
}

function untilSettledOrAborted(promise: Promise<void>, signal: AbortSignal): Promise<void> {
  if (signal.aborted) return Promise.resolve();
  return new Promise((resolve) => {
    const done = () => {
      signal.removeEventListener("abort", done);
      resolve();
    };
    signal.addEventListener("abort", done, { once: true });
    void promise.then(done, done);
  });
}

function stopReason(signal: AbortSignal): StopReason {
  const reason = signal.reason as Partial<StopReason> | undefined;
  return reason?.status === "cancelled" || reason?.status === "failed"
    ? { status: reason.status, message: reason.message ?? "stopped" }
    : { status: "cancelled", message: "cancelled" };
}

/**
 * Writes one node's record: status changes at once and in order, output-only changes at most every
 * `flushMs` (a chatty step must not become a store write per line). `final` supersedes anything pending.
 */
class RecordWriter {
  readonly #store: Store;
  readonly #key: string;
  readonly #flushMs: number;
  readonly #onError: (error: unknown) => void;
  #chain: Promise<void> = Promise.resolve();
  #timer: NodeJS.Timeout | undefined;

  constructor(store: Store, key: string, flushMs: number, onError: (error: unknown) => void) {
    this.#store = store;
    this.#key = key;
    this.#flushMs = flushMs;
    this.#onError = onError;
  }

  put(value: string): Promise<void> {
    this.#cancelTimer();
    this.#chain = this.#chain.then(() =>
      this.#store.commit({ ops: [{ type: "put", key: this.#key, value }] }).then(
        () => undefined,
        (error: unknown) => this.#onError(error),
      ),
    );
    return this.#chain;
  }

  later(value: () => string): void {
    if (this.#timer !== undefined) return;
    this.#timer = setTimeout(() => {
      this.#timer = undefined;
      void this.put(value());
    }, this.#flushMs);
  }

  final(value: string): Promise<void> {
    return this.put(value);
  }

  #cancelTimer(): void {
    if (this.#timer !== undefined) clearTimeout(this.#timer);
    this.#timer = undefined;
  }
}
