import { CorralError } from "../../base/errors.ts";
import { asArray, asObject, asOneOf, asString } from "../json-fields.ts";
import { type StepKind, type StepStatus, stepKinds, stepStatuses } from "./provisioning-step.ts";

/**
 * Provisioning jobs as the store keeps them, and the rules of how their statuses move. No I/O: the
 * dispatcher (src/engines/provisioning-dispatcher.ts) applies these functions and writes the results.
 *
 * A job is one record (`/provisioning/jobs/<id>`) plus one record per node it runs on
 * (`/provisioning/runs/<id>/<node id>`) holding that node's steps, statuses and output; a node not
 * started yet has no record and shows as queued with every step pending. Both key kinds come out of the
 * event feed as `provisioning` events, which is what WatchJob streams.
 */
export const runStatuses = ["queued", "running", "succeeded", "failed", "cancelled"] as const;
export type RunStatus = (typeof runStatuses)[number];

export const finishedStatuses: readonly RunStatus[] = ["succeeded", "failed", "cancelled"];
export const isFinished = (status: RunStatus) => finishedStatuses.includes(status);
export const isStepFinished = (status: StepStatus) => status !== "pending" && status !== "running";

export interface JobTarget {
  nodeId: string;
  nodeName: string;
}

export interface JobRecord {
  /** A decimal number, increasing: `corral provision status 12`. */
  id: string;
  plan: string;
  planVersion: string;
  parameters: Record<string, string>;
  dryRun: boolean;
  concurrency: number;
  targets: JobTarget[];
  /** The plan's step names and kinds, to show steps of nodes not started yet. */
  steps: { name: string; kind: StepKind }[];
  status: RunStatus;
  message: string;
  createdBy: string;
  createdAt: number;
  startedAt?: number;
  finishedAt?: number;
  /** 1 for the first run; each retry adds one. */
  attempt: number;
}

export interface StepRecord {
  index: number;
  name: string;
  kind: StepKind;
  status: StepStatus;
  message: string;
  output: string;
  outputTruncated: boolean;
  /** -1 when no process exit code applies (not run, killed, a file step). */
  exitCode: number;
  startedAt?: number;
  finishedAt?: number;
  /** What the step does on this node, parameters filled in. */
  description: string;
}

export interface NodeRunRecord {
  jobId: string;
  nodeId: string;
  nodeName: string;
  status: RunStatus;
  message: string;
  attempt: number;
  startedAt?: number;
  finishedAt?: number;
  steps: StepRecord[];
}

export const provisioningPrefix = "/provisioning/";
export const jobPrefix = "/provisioning/jobs/";
export const runPrefix = "/provisioning/runs/";
/** Outside `provisioningPrefix`: the plan a job runs (kept for retries), and the id sequence. */
export const jobPlanPrefix = "/provisioning-plans/";
export const jobSequenceKey = "/provisioning-sequence";

const padded = (id: string) => id.padStart(12, "0");

export function jobKey(id: string): string {
  return `${jobPrefix}${padded(id)}`;
}

export function jobPlanKey(id: string): string {
  return `${jobPlanPrefix}${padded(id)}`;
}

export function nodeRunPrefix(jobId: string): string {
  return `${runPrefix}${padded(jobId)}/`;
}

export function nodeRunKey(jobId: string, nodeId: string): string {
  return `${nodeRunPrefix(jobId)}${nodeId}`;
}

/** The job id a key under `provisioningPrefix` belongs to. */
export function jobIdOfKey(key: string): string | undefined {
  const rest = key.startsWith(jobPrefix)
    ? key.slice(jobPrefix.length)
    : key.startsWith(runPrefix)
      ? key.slice(runPrefix.length).split("/")[0]
      : undefined;
  return rest === undefined ? undefined : String(Number(rest));
}

export function parseJobId(text: string): string {
  const id = text.trim().replace(/^#/, "");
  if (!/^\d{1,12}$/.test(id) || Number(id) === 0)
    throw CorralError.invalidArgument("job_id", `"${text}" is not a job id (a number such as 12)`);
  return String(Number(id));
}

// ---------------------------------------------------------------------------------------- codecs

export function encodeJob(job: JobRecord): string {
  return JSON.stringify(job);
}

export function decodeJob(text: string): JobRecord {
  const json = asObject(JSON.parse(text), "job");
  asString(json.id, "job.id");
  asString(json.plan, "job.plan");
  asOneOf(json.status, runStatuses, "job.status");
  asArray(json.targets, "job.targets");
  asArray(json.steps, "job.steps");
  return json as unknown as JobRecord;
}

export function encodeNodeRun(run: NodeRunRecord): string {
  return JSON.stringify(run);
}

export function decodeNodeRun(text: string): NodeRunRecord {
  const json = asObject(JSON.parse(text), "node run");
  asString(json.jobId, "run.jobId");
  asString(json.nodeId, "run.nodeId");
  asOneOf(json.status, runStatuses, "run.status");
  asArray(json.steps, "run.steps").forEach((step, i) => {
    const s = asObject(step, `run.steps[${i}]`);
    asOneOf(s.status, stepStatuses, `run.steps[${i}].status`);
    asOneOf(s.kind, stepKinds, `run.steps[${i}].kind`);
  });
  return json as unknown as NodeRunRecord;
}

// ---------------------------------------------------------------------------------- state machine

function pendingSteps(job: JobRecord, descriptions: readonly string[] = []): StepRecord[] {
  return job.steps.map((step, index) => ({
    index,
    name: step.name,
    kind: step.kind,
    status: "pending",
    message: "",
    output: "",
    outputTruncated: false,
    exitCode: -1,
    description: descriptions[index] ?? "",
  }));
}

/** How a node not started yet looks: queued, every step pending. */
export function queuedNodeRun(job: JobRecord, target: JobTarget): NodeRunRecord {
  return {
    jobId: job.id,
    nodeId: target.nodeId,
    nodeName: target.nodeName,
    status: "queued",
    message: "",
    attempt: 0,
    steps: pendingSteps(job),
  };
}

/** A node's part starting (again): a new attempt, every step pending, described as it will run. */
export function startNodeRun(
  job: JobRecord,
  target: JobTarget,
  previous: NodeRunRecord | undefined,
  descriptions: readonly string[],
  now: number,
): NodeRunRecord {
  if (previous !== undefined && previous.status === "running")
    throw new CorralError(
      "FAILED_PRECONDITION",
      `node ${target.nodeName} of job ${job.id} is running already`,
    );
  return {
    jobId: job.id,
    nodeId: target.nodeId,
    nodeName: target.nodeName,
    status: "running",
    message: "",
    attempt: (previous?.attempt ?? 0) + 1,
    startedAt: now,
    steps: pendingSteps(job, descriptions),
  };
}

/** What an agent reports about one step: a start, output, or the end. */
export interface StepUpdate {
  index: number;
  status: StepStatus;
  /** Output to append (running updates). */
  output?: string;
  outputTruncated?: boolean;
  message?: string;
  exitCode?: number;
}

const allowedStepMoves: Readonly<Record<StepStatus, readonly StepStatus[]>> = {
  pending: ["running", "skipped", "unchanged", "succeeded", "failed"],
  running: ["running", "succeeded", "failed", "skipped", "unchanged"],
  succeeded: [],
  failed: [],
  skipped: [],
  unchanged: [],
};

/** Appends text to a step's output up to `maxBytes`; beyond it the output is cut and marked. */
export function appendOutput(step: StepRecord, text: string, maxBytes: number): void {
  // Once cut, the output stays cut: what follows would not join up with what was kept.
  if (text === "" || step.outputTruncated) return;
  const used = Buffer.byteLength(step.output);
  const room = maxBytes - used;
  if (room <= 0) {
    step.outputTruncated = true;
    return;
  }
  if (Buffer.byteLength(text) <= room) step.output += text;
  else {
    step.output += cutToBytes(text, room);
    step.outputTruncated = true;
  }
}

/** The longest prefix of `text` within `maxBytes` of UTF-8, never ending in half a character. */
function cutToBytes(text: string, maxBytes: number): string {
  const bytes = Buffer.from(text);
  if (bytes.length <= maxBytes) return text;
  let end = maxBytes;
  while (end > 0 && ((bytes[end] ?? 0) & 0xc0) === 0x80) end--;
  return bytes.subarray(0, end).toString();
}

/**
 * A node's record as the store keeps it, within `maxBytes` (the store refuses larger values): while
 * it is too large, the largest step output is halved and marked cut. Changes `run` in place, so that
 * later output of a cut step is not appended.
 */
export function encodeNodeRunWithin(run: NodeRunRecord, maxBytes: number): string {
  let text = encodeNodeRun(run);
  for (let round = 0; round < 512 && Buffer.byteLength(text) > maxBytes; round++) {
    let largest: StepRecord | undefined;
    for (const step of run.steps) {
      if (largest === undefined || step.output.length > largest.output.length) largest = step;
    }
    if (largest === undefined || largest.output === "") break;
    largest.output = cutToBytes(largest.output, Math.floor(Buffer.byteLength(largest.output) / 2));
    largest.outputTruncated = true;
    text = encodeNodeRun(run);
  }
  return text;
}

/**
 * Applies one step update to a running node's record (in place) and says whether it changed a status
 * (status changes are written at once; output alone may be batched). A move the state machine does not
 * allow (a finished step starting again, an index out of range) is a protocol error from the agent.
 */
export function applyStepUpdate(
  run: NodeRunRecord,
  update: StepUpdate,
  now: number,
  maxOutputBytes: number,
): { statusChanged: boolean } {
  if (run.status !== "running")
    throw new CorralError("FAILED_PRECONDITION", `node ${run.nodeName} is ${run.status}, not running`);
  const step = run.steps[update.index];
  if (step === undefined)
    throw new CorralError(
      "INTERNAL",
      `the agent reported step ${update.index + 1}, but the plan has ${run.steps.length}`,
    );
  if (!allowedStepMoves[step.status].includes(update.status))
    throw new CorralError(
      "INTERNAL",
      `the agent moved step ${update.index + 1} ("${step.name}") from ${step.status} to ${update.status}`,
    );
  const statusChanged = step.status !== update.status;
  if (statusChanged) {
    if (update.status === "running") step.startedAt = now;
    else {
      step.startedAt ??= now;
      step.finishedAt = now;
    }
    step.status = update.status;
  }
  appendOutput(step, update.output ?? "", maxOutputBytes);
  if (update.outputTruncated) step.outputTruncated = true;
  if (update.message !== undefined && update.message !== "") step.message = update.message;
  if (update.exitCode !== undefined) step.exitCode = update.exitCode;
  return { statusChanged };
}

/**
 * Ends a node's part. Steps still running fail with `message`; pending ones are skipped. The node's
 * status is `outcome` when given (failed, cancelled), else what its steps say.
 */
export function finishNodeRun(
  run: NodeRunRecord,
  now: number,
  outcome?: { status: "failed" | "cancelled"; message: string },
): NodeRunRecord {
  const steps = run.steps.map((step) => {
    if (step.status === "running")
      return {
        ...step,
        status: "failed" as const,
        finishedAt: now,
        message: outcome?.message ?? "the step did not report an end",
      };
    if (step.status === "pending")
      return { ...step, status: "skipped" as const, message: step.message || skipReason(run, outcome) };
    return step;
  });
  const failedStep = steps.find((s) => s.status === "failed");
  const status: RunStatus = outcome?.status ?? (failedStep === undefined ? "succeeded" : "failed");
  const message =
    outcome?.message ??
    (failedStep === undefined
      ? `${steps.filter((s) => s.status === "unchanged").length} of ${steps.length} steps unchanged`
      : `step ${failedStep.index + 1} ("${failedStep.name}") failed${failedStep.message ? `: ${failedStep.message}` : ""}`);
  return { ...run, status, message, finishedAt: now, steps };
}

function skipReason(run: NodeRunRecord, outcome?: { status: string; message: string }): string {
  if (outcome?.status === "cancelled") return "not run: the job was cancelled";
  const failed = run.steps.find((s) => s.status === "failed" || s.status === "running");
  return failed === undefined ? "not run" : `not run: step ${failed.index + 1} failed`;
}

/** A dry run's record for one node: nothing ran; each step says what it would do. */
export function dryRunNodeRun(
  job: JobRecord,
  target: JobTarget,
  descriptions: readonly string[],
  now: number,
): NodeRunRecord {
  return {
    jobId: job.id,
    nodeId: target.nodeId,
    nodeName: target.nodeName,
    status: "succeeded",
    message: "dry run: nothing was run",
    attempt: 0,
    startedAt: now,
    finishedAt: now,
    steps: pendingSteps(job, descriptions).map((step) => ({
      ...step,
      status: "skipped",
      message: `dry run: would ${step.description}`,
    })),
  };
}

/** A job's status from its nodes' (queued nodes have no record yet, so they count as queued). */
export function jobStatusOf(job: JobRecord, runs: readonly NodeRunRecord[]): RunStatus {
  const byNode = new Map(runs.map((run) => [run.nodeId, run.status]));
  const statuses = job.targets.map((t) => byNode.get(t.nodeId) ?? "queued");
  if (statuses.some((s) => s === "running")) return "running";
  if (statuses.some((s) => s === "queued"))
    return statuses.every((s) => s === "queued") ? "queued" : "running";
  if (statuses.some((s) => s === "failed")) return "failed";
  if (statuses.some((s) => s === "cancelled")) return "cancelled";
  return "succeeded";
}

export function jobSummary(job: JobRecord, runs: readonly NodeRunRecord[]): string {
  const byNode = new Map(runs.map((run) => [run.nodeId, run.status]));
  const counts = new Map<RunStatus, number>();
  for (const t of job.targets) {
    const status = byNode.get(t.nodeId) ?? "queued";
    counts.set(status, (counts.get(status) ?? 0) + 1);
  }
  return runStatuses
    .filter((s) => counts.has(s))
    .map((s) => `${counts.get(s)} ${s}`)
    .join(", ");
}

/** The nodes a retry runs again: every one that did not succeed. */
export function retryTargets(job: JobRecord, runs: readonly NodeRunRecord[]): JobTarget[] {
  if (job.dryRun)
    throw new CorralError("FAILED_PRECONDITION", `job ${job.id} is a dry run; run the plan instead`);
  if (!isFinished(job.status))
    throw new CorralError(
      "FAILED_PRECONDITION",
      `job ${job.id} is ${job.status}; retry it once it has finished`,
    );
  const byNode = new Map(runs.map((run) => [run.nodeId, run]));
  const targets = job.targets.filter((t) => byNode.get(t.nodeId)?.status !== "succeeded");
  if (targets.length === 0)
    throw new CorralError(
      "FAILED_PRECONDITION",
      `job ${job.id} succeeded on every node; there is nothing to retry`,
    );
  return targets;
}

/** A node part interrupted by a controller that stopped or died while it ran. */
export const interruptedMessage =
  "interrupted: the controller stopped while this node was being provisioned; retry the job";

// ------------------------------------------------------------------------------------------ events

/** A job record or a node's part of a job was written or deleted (the record after the change). */
export interface ProvisioningEvent {
  kind: "provisioning";
  type:
    | "provisioning.job.put"
    | "provisioning.job.deleted"
    | "provisioning.run.put"
    | "provisioning.run.deleted";
  revision: number;
  key: string;
  jobId: string;
  job?: JobRecord;
  run?: NodeRunRecord;
}

/** Decodes store events under `provisioningPrefix` (see cluster-event.ts). */
export function decodeProvisioningEvent(event: {
  revision: number;
  type: "put" | "delete";
  key: string;
  value?: string;
  prevValue?: string;
}): ProvisioningEvent {
  const isJob = event.key.startsWith(jobPrefix);
  const deleted = event.type === "delete";
  const type =
    `provisioning.${isJob ? "job" : "run"}.${deleted ? "deleted" : "put"}` as ProvisioningEvent["type"];
  const base: ProvisioningEvent = {
    kind: "provisioning",
    type,
    revision: event.revision,
    key: event.key,
    jobId: jobIdOfKey(event.key) ?? "",
  };
  const text = deleted ? event.prevValue : event.value;
  if (text === undefined) return base;
  return isJob ? { ...base, job: decodeJob(text) } : { ...base, run: decodeNodeRun(text) };
}
