import { toJson } from "@bufbuild/protobuf";
import { type Timestamp, timestampMs } from "@bufbuild/protobuf/wkt";
import type { Command } from "commander";
import { CorralError } from "../../base/errors.ts";
import type { Connection } from "../../client/connection.ts";
import { enumText, formatSpan } from "../../client/format.ts";
import {
  type Job,
  type JobNode,
  JobSchema,
  ListPlansResponseSchema,
  ProvisioningService,
  RunStatus,
  StepStatus,
  WatchJobResponseSchema,
} from "../../gen/corral/v1/provisioning_pb.ts";
import { globalsOf } from "../global-options.ts";
import { type Field, printJson, renderFields, renderTable } from "../output.ts";

const runText = (status: RunStatus) => enumText(RunStatus, status);
const stepText = (status: StepStatus) => enumText(StepStatus, status);
const finished = (status: RunStatus) =>
  status === RunStatus.SUCCEEDED || status === RunStatus.FAILED || status === RunStatus.CANCELLED;

function collect(value: string, previous: string[] = []): string[] {
  return [...previous, value];
}

/** `k=v` pairs from repeated options; the value may hold `=`. */
function pairs(values: readonly string[], flag: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const value of values) {
    const at = value.indexOf("=");
    if (at <= 0) throw CorralError.invalidArgument(flag, `"${value}" is not key=value`);
    out[value.slice(0, at)] = value.slice(at + 1);
  }
  return out;
}

function took(job: { startedAt?: Timestamp | undefined; finishedAt?: Timestamp | undefined }): string {
  if (job.startedAt === undefined) return "-";
  const end = job.finishedAt === undefined ? Date.now() : timestampMs(job.finishedAt);
  return formatSpan(end - timestampMs(job.startedAt));
}

/** The job and a table of every node's steps: what `status` prints. */
export function describeJob(job: Job): string {
  const fields: Field[] = [
    ["job", job.id],
    ["plan", `${job.plan}@${job.planVersion}${job.dryRun ? " (dry run)" : ""}`],
    ["status", runText(job.status)],
    ["message", job.message || "-"],
    ["attempt", String(job.attempt)],
    ["created by", job.createdBy || "-"],
    ["took", took(job)],
    [
      "parameters",
      Object.entries(job.parameters)
        .sort(([a], [b]) => (a < b ? -1 : 1))
        .map(([k, v]) => [k, v] as const),
    ],
  ];
  const rows = job.nodes.flatMap((node) => [
    [node.nodeName, "", runText(node.status), node.message],
    ...node.steps.map((step) => [
      "",
      `${step.index + 1}. ${step.name}`,
      stepText(step.status),
      step.message || (job.dryRun ? "" : step.description),
    ]),
  ]);
  return `${renderFields(fields)}\n${renderTable(["node", "step", "status", "message"], rows)}`;
}

function stepLine(
  nodeName: string,
  total: number,
  step: { index: number; name: string; status: StepStatus; message: string },
) {
  const message = step.message === "" ? "" : ` — ${step.message}`;
  return `[${nodeName}] step ${step.index + 1}/${total} "${step.name}": ${stepText(step.status)}${message}\n`;
}

interface FollowOptions {
  /** Print each step's output as it comes. */
  readonly output: boolean;
  /** Print status changes. */
  readonly progress: boolean;
  readonly node?: string;
}

/**
 * Follows a job (WatchJob) until it finishes or Ctrl-C. Returns the job's final status, or undefined
 * when interrupted.
 */
async function follow(
  connection: Connection,
  jobId: string,
  options: FollowOptions,
  json: boolean,
): Promise<RunStatus | undefined> {
  const stop = new AbortController();
  const onSignal = () => stop.abort();
  process.once("SIGINT", onSignal);
  let status: RunStatus | undefined;
  const totals = new Map<string, number>();
  const wanted = (node: { nodeId: string; nodeName: string }) =>
    options.node === undefined || options.node === node.nodeId || options.node === node.nodeName;
  try {
    const stream = connection
      .client(ProvisioningService)
      .watchJob({ jobId }, { signal: stop.signal, timeoutMs: 0 });
    await connection
      .call(
        (async () => {
          for await (const message of stream) {
            if (json) {
              process.stdout.write(`${JSON.stringify(toJson(WatchJobResponseSchema, message))}\n`);
            }
            const event = message.event;
            switch (event.case) {
              case "snapshot": {
                status = event.value.status;
                for (const node of event.value.nodes) {
                  totals.set(node.nodeId, node.steps.length);
                  if (json || !wanted(node)) continue;
                  for (const step of node.steps) {
                    if (options.output && step.output !== "")
                      process.stdout.write(prefixLines(node.nodeName, step.output));
                    if (options.progress && step.status !== StepStatus.PENDING)
                      process.stdout.write(stepLine(node.nodeName, node.steps.length, step));
                  }
                  if (options.progress && finished(node.status)) process.stdout.write(nodeLine(node));
                }
                // A job that had finished before we asked ends the stream here.
                if (!json && options.progress && finished(status))
                  process.stdout.write(jobLine(jobId, status, event.value.message));
                break;
              }
              case "step": {
                const change = event.value;
                if (json || change.step === undefined || !wanted(change)) break;
                if (options.output && change.outputAppended !== "")
                  process.stdout.write(prefixLines(change.nodeName, change.outputAppended));
                if (options.progress && change.outputAppended === "")
                  process.stdout.write(
                    stepLine(change.nodeName, totals.get(change.nodeId) ?? 0, change.step),
                  );
                break;
              }
              case "node": {
                const node = event.value;
                if (!json && options.progress && wanted(node) && node.status !== RunStatus.QUEUED)
                  process.stdout.write(nodeLine(node));
                break;
              }
              case "job":
                status = event.value.status;
                if (!json && options.progress && finished(status))
                  process.stdout.write(jobLine(jobId, status, event.value.message));
                break;
            }
          }
        })(),
      )
      .catch((error: unknown) => {
        if (!stop.signal.aborted) throw error;
      });
  } finally {
    process.off("SIGINT", onSignal);
  }
  return stop.signal.aborted ? undefined : status;
}

const nodeLine = (node: { nodeName: string; status: RunStatus; message: string }) =>
  `[${node.nodeName}] ${runText(node.status)}${node.message ? ` — ${node.message}` : ""}\n`;
const jobLine = (jobId: string, status: RunStatus, message: string) =>
  `job ${jobId} ${runText(status)}${message ? `: ${message}` : ""}\n`;

/** Output lines prefixed with the node they came from; a partial last line is ended. */
function prefixLines(nodeName: string, text: string): string {
  const lines = text.endsWith("\n") ? text.slice(0, -1).split("\n") : text.split("\n");
  return `${lines.map((line) => `${nodeName} | ${line}`).join("\n")}\n`;
}

function setExitCode(status: RunStatus | undefined): void {
  if (status === undefined) process.exitCode = 130;
  else if (status !== RunStatus.SUCCEEDED) process.exitCode = 1;
}

export function registerProvisionCommand(program: Command): void {
  const provision = program
    .command("provision")
    .description(
      "run provisioning plans (exec, file, systemd, waitFor steps) on nodes, and follow their jobs",
    );

  provision
    .command("plans")
    .description("the plans the controller can run, and plan files it refused")
    .action(async (_options: unknown, command: Command) => {
      const globals = globalsOf(command);
      const connection = await globals.connect();
      const response = await connection.call(connection.client(ProvisioningService).listPlans({}));
      if (globals.output === "json") return printJson(toJson(ListPlansResponseSchema, response));
      process.stdout.write(
        renderTable(
          ["plan", "version", "steps", "parameters", "description"],
          response.plans.map((plan) => [
            plan.name,
            plan.version,
            String(plan.steps.length),
            plan.parameters
              .map((p) => (p.required ? `${p.name}*` : p.list ? `${p.name}[]` : p.name))
              .join(",") || "-",
            plan.description,
          ]),
        ),
      );
      if (response.problems.length > 0) {
        process.stderr.write(
          `\nrefused plan files:\n${response.problems.map((p) => `  ${p.message}`).join("\n")}\n`,
        );
        process.exitCode = 1;
      }
    });

  provision
    .command("run <plan>")
    .description("run a plan (name or name@version) on nodes: --node X (repeatable), --all or --selector k=v")
    .option("--node <node>", "a node id or name (repeat for several)", collect, [])
    .option("--all", "every ready agent of the cluster", false)
    .option(
      "--selector <label=value>",
      "every ready agent with this label (repeatable: all must hold)",
      collect,
      [],
    )
    .option("-p, --param <key=value>", "a plan parameter (repeatable)", collect, [])
    .option("--dry-run", "validate and show what every step would do; run nothing", false)
    .option("--concurrency <n>", "nodes provisioned at once (default: the controller's, 4)")
    .option("-w, --wait", "follow the job until it finishes; exit 1 unless it succeeds", false)
    .action(
      async (
        plan: string,
        options: {
          node: string[];
          all: boolean;
          selector: string[];
          param: string[];
          dryRun: boolean;
          concurrency?: string;
          wait: boolean;
        },
        command: Command,
      ) => {
        const globals = globalsOf(command);
        const concurrency = options.concurrency === undefined ? 0 : Number(options.concurrency);
        if (!Number.isInteger(concurrency) || concurrency < 0)
          throw CorralError.invalidArgument(
            "--concurrency",
            `"${options.concurrency}" is not a number of nodes`,
          );
        const selector = pairs(options.selector, "--selector");
        const modes = [options.node.length > 0, options.all, Object.keys(selector).length > 0].filter(
          Boolean,
        ).length;
        if (modes !== 1)
          throw CorralError.invalidArgument("--node", "give exactly one of --node, --all, --selector");
        const connection = await globals.connect(30_000);
        const response = await connection.call(
          connection.client(ProvisioningService).runPlan({
            plan,
            nodes: options.node,
            all: options.all,
            selector,
            parameters: pairs(options.param, "--param"),
            dryRun: options.dryRun,
            concurrency,
          }),
        );
        const job = response.job;
        if (job === undefined) throw new Error("the controller answered without the job");
        if (!options.wait || options.dryRun) {
          if (globals.output === "json") printJson(toJson(JobSchema, job));
          else if (options.dryRun) process.stdout.write(describeDryRun(job));
          else
            process.stdout.write(
              `job ${job.id}: ${job.plan}@${job.planVersion} on ${job.nodes.map((n) => n.nodeName).join(", ")} (${runText(job.status)})\n` +
                `follow it: corral provision status ${job.id} · corral provision logs -f ${job.id}\n`,
            );
          return;
        }
        if (globals.output !== "json")
          process.stdout.write(
            `job ${job.id}: ${job.plan}@${job.planVersion} on ${job.nodes.length} node(s)\n`,
          );
        setExitCode(
          await follow(connection, job.id, { output: false, progress: true }, globals.output === "json"),
        );
      },
    );

  provision
    .command("status <job>")
    .description("a job: every node's steps with their statuses and messages")
    .action(async (jobId: string, _options: unknown, command: Command) => {
      const globals = globalsOf(command);
      const connection = await globals.connect();
      const response = await connection.call(connection.client(ProvisioningService).getJob({ jobId }));
      const job = response.job;
      if (job === undefined) throw new Error("the controller answered without the job");
      if (globals.output === "json") printJson(toJson(JobSchema, job));
      else process.stdout.write(describeJob(job));
      if (finished(job.status) && job.status !== RunStatus.SUCCEEDED) process.exitCode = 1;
    });

  provision
    .command("logs <job>")
    .description("the output of a job's steps, node by node; -f follows a running job")
    .option("--node <node>", "only this node (id or name)")
    .option("-f, --follow", "keep printing output until the job finishes or Ctrl-C", false)
    .action(async (jobId: string, options: { node?: string; follow: boolean }, command: Command) => {
      const globals = globalsOf(command);
      const connection = await globals.connect();
      if (options.follow) {
        setExitCode(
          await follow(
            connection,
            jobId,
            { output: true, progress: true, ...(options.node === undefined ? {} : { node: options.node }) },
            globals.output === "json",
          ),
        );
        return;
      }
      const response = await connection.call(connection.client(ProvisioningService).getJob({ jobId }));
      const job = response.job;
      if (job === undefined) throw new Error("the controller answered without the job");
      const nodes = job.nodes.filter(
        (n) => options.node === undefined || n.nodeId === options.node || n.nodeName === options.node,
      );
      if (options.node !== undefined && nodes.length === 0)
        throw CorralError.notFound("node of the job", options.node);
      if (globals.output === "json") {
        printJson(
          nodes.map((n) => ({
            node: n.nodeName,
            steps: n.steps.map((s) => ({
              step: s.name,
              status: stepText(s.status),
              output: s.output,
              truncated: s.outputTruncated,
            })),
          })),
        );
        return;
      }
      process.stdout.write(nodes.map(nodeLog).join("\n"));
    });

  provision
    .command("retry <job>")
    .description("run a finished job again on the nodes that did not succeed (the others are left alone)")
    .option("-w, --wait", "follow the job until it finishes; exit 1 unless it succeeds", false)
    .action(async (jobId: string, options: { wait: boolean }, command: Command) => {
      const globals = globalsOf(command);
      const connection = await globals.connect(30_000);
      const response = await connection.call(connection.client(ProvisioningService).retryJob({ jobId }));
      const job = response.job;
      if (job === undefined) throw new Error("the controller answered without the job");
      if (!options.wait) {
        if (globals.output === "json") printJson(toJson(JobSchema, job));
        else process.stdout.write(`job ${job.id}: ${job.message}\n`);
        return;
      }
      if (globals.output !== "json") process.stdout.write(`job ${job.id}: ${job.message}\n`);
      setExitCode(
        await follow(connection, job.id, { output: false, progress: true }, globals.output === "json"),
      );
    });

  provision
    .command("cancel <job>")
    .description("stop a running job: running steps are killed, nodes not started are not started")
    .action(async (jobId: string, _options: unknown, command: Command) => {
      const globals = globalsOf(command);
      const connection = await globals.connect(30_000);
      const response = await connection.call(connection.client(ProvisioningService).cancelJob({ jobId }));
      const job = response.job;
      if (job === undefined) throw new Error("the controller answered without the job");
      if (globals.output === "json") printJson(toJson(JobSchema, job));
      else process.stdout.write(`job ${job.id} ${runText(job.status)}: ${job.message}\n`);
    });

  provision
    .command("jobs")
    .description("recent jobs, newest first")
    .option("--limit <n>", "at most this many", "20")
    .action(async (options: { limit: string }, command: Command) => {
      const globals = globalsOf(command);
      const connection = await globals.connect();
      const response = await connection.call(
        connection.client(ProvisioningService).listJobs({ limit: Number(options.limit) || 20 }),
      );
      if (globals.output === "json") return printJson(response.jobs.map((job) => toJson(JobSchema, job)));
      process.stdout.write(
        renderTable(
          ["job", "plan", "status", "nodes", "created", "by"],
          response.jobs.map((job) => [
            job.id,
            `${job.plan}@${job.planVersion}${job.dryRun ? " (dry run)" : ""}`,
            runText(job.status),
            `${job.nodes.filter((n) => n.status === RunStatus.SUCCEEDED).length}/${job.nodes.length} ok`,
            job.createdAt === undefined ? "-" : new Date(timestampMs(job.createdAt)).toISOString(),
            job.createdBy,
          ]),
        ),
      );
    });
}

function nodeLog(node: JobNode): string {
  const header = `=== ${node.nodeName} (${runText(node.status)}${node.attempt > 1 ? `, attempt ${node.attempt}` : ""})\n`;
  return (
    header +
    node.steps
      .map((step) => {
        const head = `--- step ${step.index + 1} "${step.name}": ${stepText(step.status)}${step.message ? ` — ${step.message}` : ""}\n`;
        const body = step.output === "" ? "" : step.output.endsWith("\n") ? step.output : `${step.output}\n`;
        return head + body + (step.outputTruncated ? "[output cut at the controller's limit]\n" : "");
      })
      .join("")
  );
}

function describeDryRun(job: Job): string {
  const lines = [`dry run of ${job.plan}@${job.planVersion} (job ${job.id}); nothing was run:`];
  for (const node of job.nodes) {
    lines.push(`${node.nodeName}:`);
    for (const step of node.steps) lines.push(`  ${step.index + 1}. ${step.name}: ${step.description}`);
  }
  return `${lines.join("\n")}\n`;
}
