import { readFile } from "node:fs/promises";
import { type MessageInitShape, toJson } from "@bufbuild/protobuf";
import { type Client, Code, ConnectError } from "@connectrpc/connect";
import type { Command } from "commander";
import { CorralError } from "../../base/errors.ts";
import type { Connection } from "../../client/connection.ts";
import { NodeRole, NodesService } from "../../gen/corral/v1/nodes_pb.ts";
import {
  type PipelineRun,
  PipelineRunSchema,
  PipelineRunState,
  PipelineRunSummarySchema,
  PipelineRunsService,
} from "../../gen/corral/v1/pipelines_pb.ts";
import { Level } from "../../gen/logging_pb.ts";
import {
  ConfigCompatability,
  type Pipeline,
  PipelineSchema,
  PipelinesService,
  type RestartPolicy,
  type RestartPolicySchema,
  TelemetrySampleSchema,
} from "../../gen/pipelines_pb.ts";
import { globalsOf } from "../global-options.ts";
import { printJson, renderFields, renderTable } from "../output.ts";

interface NodeOption {
  node?: string;
}

interface SettingsOptions extends NodeOption {
  config?: string;
  name?: string;
  restart?: string;
  auto?: boolean;
  manual?: boolean;
  forceRestart?: boolean;
  performanceMode?: string;
  cpuPin?: string;
}

type Pipelines = Client<typeof PipelinesService>;

/** The node's id: `--node` (id or name) through NodesService, else the controller's own node. */
async function nodeIdOf(connection: Connection, options: NodeOption): Promise<string> {
  const nodes = connection.client(NodesService);
  if (options.node) {
    const { node } = await connection.call(nodes.getNode({ node: options.node }));
    if (node === undefined) throw CorralError.notFound("node", options.node);
    return node.id;
  }
  const { nodes: all } = await connection.call(nodes.listNodes({}));
  const own = all.find((n) => n.role === NodeRole.CONTROLLER);
  if (own === undefined) throw CorralError.notFound("node", "the controller's own node");
  return own.id;
}

/** A pipeline by id, else by name. */
async function findPipeline(
  connection: Connection,
  client: Pipelines,
  nodeId: string,
  which: string,
): Promise<Pipeline> {
  try {
    const { pipeline } = await client.getPipelineById({ nodeId, id: which });
    if (pipeline !== undefined) return pipeline;
  } catch (error) {
    if (!(error instanceof ConnectError) || error.code !== Code.NotFound) throw error;
  }
  const { pipeline } = await connection.call(client.getPipelineByName({ nodeId, name: which }));
  if (pipeline === undefined) throw CorralError.notFound("pipeline", which);
  return pipeline;
}

/** `never`, `always:N` or `on-failure:N`. */
export function parseRestart(text: string): MessageInitShape<typeof RestartPolicySchema> {
  const match = /^(never|always|on[-_]failure)(?::(\d+))?$/.exec(text.trim());
  if (match === null)
    throw CorralError.invalidArgument("--restart", `"${text}" is not never, always:N or on-failure:N`);
  const max = Number(match[2] ?? 0);
  if (match[1] === "never") return { restartPolicy: { case: "never", value: {} } };
  if (match[1] === "always") return { restartPolicy: { case: "always", value: { maxRestarts: max } } };
  return { restartPolicy: { case: "onFailure", value: { maxRestarts: max } } };
}

/** `on` or `off` (NanoPing's performance_mode). */
function parsePerformanceMode(text: string): boolean {
  if (text === "on") return true;
  if (text === "off") return false;
  throw CorralError.invalidArgument("--performance-mode", `"${text}" is not on or off`);
}

/** A CPU number, or `auto` (unset: the node chooses one per run). */
function parseCpuPin(text: string): { case: "cpuPin"; value: number } | { case: undefined } {
  if (text === "auto") return { case: undefined };
  if (!/^\d{1,4}$/.test(text))
    throw CorralError.invalidArgument("--cpu-pin", `"${text}" is not a CPU number or auto`);
  return { case: "cpuPin", value: Number(text) };
}

function restartText(policy: RestartPolicy | undefined): string {
  const p = policy?.restartPolicy;
  if (p?.case === "always") return `always:${p.value.maxRestarts}`;
  if (p?.case === "onFailure") return `on-failure:${p.value.maxRestarts}`;
  return "never";
}

async function readConfig(file: string | undefined, required: boolean): Promise<string | undefined> {
  if (file !== undefined && file !== "-") return readFile(file, "utf8");
  if (file === undefined && (process.stdin.isTTY || !required)) {
    if (required) throw CorralError.invalidArgument("--config", "give a config file, or pipe it on stdin");
    return undefined;
  }
  const chunks: Buffer[] = [];
  for await (const chunk of process.stdin) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks).toString("utf8");
}

const runOf = (p: Pipeline) => (p.optionalCurrentRun.case === "currentRun" ? p.optionalCurrentRun.value : "");

/** The latest run of each pipeline of the node (corral's PipelineRunsService), by pipeline id. */
async function runsOf(connection: Connection, nodeId: string): Promise<Map<string, PipelineRun>> {
  const runs = connection.client(PipelineRunsService);
  const { pipelines } = await connection.call(runs.listPipelines({ nodeId }));
  const byId = new Map<string, PipelineRun>();
  for (const p of pipelines) if (p.run !== undefined) byId.set(p.pipelineId, p.run);
  return byId;
}

/** `pipelines ls` for a caller who may not read configs: what PipelineRunsService tells everyone. */
async function printRunSummaries(output: string, connection: Connection, nodeId: string): Promise<void> {
  const runs = connection.client(PipelineRunsService);
  const { pipelines } = await connection.call(runs.listPipelines({ nodeId }));
  if (output === "json") return printJson(pipelines.map((p) => toJson(PipelineRunSummarySchema, p)));
  process.stdout.write(
    renderTable(
      ["name", "id", "started", "run", "state", "exit", "restarts", "restart", "startup", "config"],
      pipelines.map((p) => [
        p.name,
        p.pipelineId,
        String(p.started),
        p.run?.runId ?? "-",
        stateText(p.run),
        exitText(p.run),
        String(p.run?.restarts ?? "-"),
        p.restartPolicy,
        p.startup,
        p.compatible ? "compatible" : "incompatible",
      ]),
    ),
  );
}

const stateText = (run: PipelineRun | undefined) =>
  run === undefined ? "-" : (PipelineRunState[run.state] ?? "").toLowerCase();
const exitText = (run: PipelineRun | undefined) =>
  run === undefined || run.finishedAt === undefined
    ? "-"
    : `${run.exitCode === undefined ? "" : `code ${run.exitCode}: `}${run.exitReason}`;
const timeText = (t: { seconds: bigint; nanos: number } | undefined) =>
  t === undefined ? "-" : new Date(Number(t.seconds) * 1000 + t.nanos / 1e6).toISOString();

function print(output: string, pipeline: Pipeline, run?: PipelineRun): void {
  if (output === "json") {
    printJson({
      ...(toJson(PipelineSchema, pipeline) as object),
      ...(run === undefined ? {} : { run: toJson(PipelineRunSchema, run) }),
    });
    return;
  }
  process.stdout.write(
    renderFields([
      ["id", pipeline.id],
      ["name", pipeline.name],
      ["started", String(pipeline.started)],
      ["current run", runOf(pipeline) || "-"],
      ["last run", run?.runId ?? "-"],
      ["run state", stateText(run)],
      ["exit", exitText(run)],
      ["restarts", run === undefined ? "-" : String(run.restarts)],
      ["run started", timeText(run?.startedAt)],
      ["run finished", timeText(run?.finishedAt)],
      [
        "cpu pin",
        run?.cpuPin === undefined
          ? "-"
          : `${run.cpuPin.cpu} (${run.cpuPin.applied ? "applied" : "not applied"}: ${run.cpuPin.detail})`,
      ],
      [
        "endpoints",
        run === undefined || run.endpoints.length === 0
          ? "-"
          : run.endpoints.map((e) => `${e.block}=${e.host}:${e.port}`).join(", "),
      ],
      ["restart", restartText(pipeline.restartPolicy)],
      ["startup", pipeline.startupPolicy?.startupPolicy.case ?? "manual"],
      ["config", ConfigCompatability[pipeline.configCompatability]],
      ["logging level", Level[pipeline.defaultLoggingLevel] ?? String(pipeline.defaultLoggingLevel)],
      ["instructions timeout", `${pipeline.instructionsTimeout}s`],
      ["performance mode", String(pipeline.performanceMode)],
    ]),
  );
}

async function open(command: Command, options: NodeOption, follow = false) {
  const globals = globalsOf(command);
  const connection = await globals.connect(follow ? 0 : undefined);
  const nodeId = await nodeIdOf(connection, options);
  return { globals, connection, nodeId, client: connection.client(PipelinesService) };
}

/** A run id as given, or the current run of the pipeline named. */
async function runIdOf(connection: Connection, client: Pipelines, nodeId: string, which: string) {
  if (which.startsWith("run-")) return which;
  const pipeline = await findPipeline(connection, client, nodeId, which);
  const run = runOf(pipeline);
  if (run === "") throw new CorralError("FAILED_PRECONDITION", `pipeline "${pipeline.name}" is not running`);
  return run;
}

/** Runs a server stream until it ends or Ctrl-C. */
async function follow(
  connection: Connection,
  body: (signal: AbortSignal, done: () => void) => Promise<void>,
): Promise<void> {
  const stop = new AbortController();
  const done = () => stop.abort();
  const onSignal = () => stop.abort();
  process.once("SIGINT", onSignal);
  try {
    await connection.call(body(stop.signal, done)).catch((error: unknown) => {
      if (!stop.signal.aborted) throw error;
    });
  } finally {
    process.off("SIGINT", onSignal);
  }
}

export function registerPipelinesCommand(program: Command): void {
  const pipelines = program
    .command("pipelines")
    .description("NanoPing pipelines on a node (PipelinesService through the controller)");
  const nodeOption = ["--node <node>", "node id or name (default: the controller's own node)"] as const;

  pipelines
    .command("ls")
    .description("the node's pipelines")
    .option(...nodeOption)
    .action(async (options: NodeOption, command: Command) => {
      const { globals, connection, nodeId, client } = await open(command, options);
      const configs = await connection.call(client.getPipelines({ nodeId })).catch((error: unknown) => {
        // Configs (argv, env) are for operators and the node itself; viewers still see run state.
        if (error instanceof CorralError && error.code === "PERMISSION_DENIED") return undefined;
        throw error;
      });
      if (configs === undefined) return printRunSummaries(globals.output, connection, nodeId);
      const list = configs.pipelines;
      const runs = await runsOf(connection, nodeId);
      if (globals.output === "json")
        return printJson(
          list.map((p) => {
            const run = runs.get(p.id);
            return {
              ...(toJson(PipelineSchema, p) as object),
              ...(run === undefined ? {} : { run: toJson(PipelineRunSchema, run) }),
            };
          }),
        );
      process.stdout.write(
        renderTable(
          ["name", "id", "started", "run", "state", "exit", "restarts", "restart", "startup", "config"],
          list.map((p) => [
            p.name,
            p.id,
            String(p.started),
            runs.get(p.id)?.runId ?? "-",
            stateText(runs.get(p.id)),
            exitText(runs.get(p.id)),
            String(runs.get(p.id)?.restarts ?? "-"),
            restartText(p.restartPolicy),
            p.startupPolicy?.startupPolicy.case ?? "manual",
            ConfigCompatability[p.configCompatability],
          ]),
        ),
      );
    });

  pipelines
    .command("show <pipeline>")
    .description("one pipeline, by id, name or run id")
    .option(...nodeOption)
    .option("--config", "print only its JSON config")
    .action(async (which: string, options: NodeOption & { config?: boolean }, command: Command) => {
      const { globals, connection, nodeId, client } = await open(command, options);
      const pipeline = which.startsWith("run-")
        ? (await connection.call(client.getPipelineByRunId({ nodeId, id: which }))).pipeline
        : await findPipeline(connection, client, nodeId, which);
      if (pipeline === undefined) throw CorralError.notFound("pipeline", which);
      if (options.config) process.stdout.write(`${pipeline.jsonConfig.trimEnd()}\n`);
      else print(globals.output, pipeline, (await runsOf(connection, nodeId)).get(pipeline.id));
    });

  const settingsOptions = (c: Command) =>
    c
      .option(...nodeOption)
      .option("--config <file>", "the NanoPing JSON config (default: stdin; - for stdin)")
      .option("--name <name>", "the pipeline's name")
      .option("--restart <policy>", "never, always:N or on-failure:N")
      .option("--auto", "start on create and whenever the node starts")
      .option("--manual", "start only when asked (the default)")
      .option("--performance-mode <on|off>", "on (the default): busy-wait pacing, raised priority")
      .option("--cpu-pin <cpu|auto>", "pin runs to this CPU; auto (the default): the node chooses");

  settingsOptions(pipelines.command("create").description("create a pipeline")).action(
    async (options: SettingsOptions, command: Command) => {
      if (!options.name) throw CorralError.invalidArgument("--name", "a pipeline needs a name");
      const jsonConfig = (await readConfig(options.config, true)) ?? "";
      const { globals, connection, nodeId, client } = await open(command, options);
      const { pipeline } = await connection.call(
        client.createPipeline({
          nodeId,
          name: options.name,
          jsonConfig,
          restartPolicy: parseRestart(options.restart ?? "never"),
          startupPolicy: {
            startupPolicy: options.auto ? { case: "auto", value: {} } : { case: "manual", value: {} },
          },
          ...(options.performanceMode === undefined
            ? {}
            : {
                optionalPerformanceMode: {
                  case: "performanceMode",
                  value: parsePerformanceMode(options.performanceMode),
                },
              }),
          ...(options.cpuPin === undefined ? {} : { optionalCpuPin: parseCpuPin(options.cpuPin) }),
        }),
      );
      if (pipeline === undefined) throw new CorralError("INTERNAL", "create answered no pipeline");
      print(globals.output, pipeline);
    },
  );

  settingsOptions(
    pipelines
      .command("update <pipeline>")
      .description("change a pipeline; settings not given are kept")
      .option("--force-restart", "restart a running pipeline with the new settings"),
  ).action(async (which: string, options: SettingsOptions, command: Command) => {
    const jsonConfig = await readConfig(options.config, false);
    const { globals, connection, nodeId, client } = await open(command, options);
    const current = await findPipeline(connection, client, nodeId, which);
    const startup = options.auto
      ? "auto"
      : options.manual
        ? "manual"
        : current.startupPolicy?.startupPolicy.case;
    const { pipeline } = await connection.call(
      client.updatePipeline({
        nodeId,
        id: current.id,
        name: options.name ?? current.name,
        jsonConfig: jsonConfig ?? current.jsonConfig,
        restartPolicy: options.restart === undefined ? current.restartPolicy : parseRestart(options.restart),
        startupPolicy: {
          startupPolicy: startup === "auto" ? { case: "auto", value: {} } : { case: "manual", value: {} },
        },
        defaultLoggingLevel: current.defaultLoggingLevel,
        instructionsTimeout: current.instructionsTimeout,
        optionalCpuPin: options.cpuPin === undefined ? current.optionalCpuPin : parseCpuPin(options.cpuPin),
        optionalPerformanceMode: {
          case: "performanceMode",
          value:
            options.performanceMode === undefined
              ? current.performanceMode
              : parsePerformanceMode(options.performanceMode),
        },
        optionalNodeReferenceId: current.optionalNodeReferenceId,
        forceRestart: options.forceRestart === true,
      }),
    );
    if (pipeline === undefined) throw new CorralError("INTERNAL", "update answered no pipeline");
    print(globals.output, pipeline);
  });

  pipelines
    .command("rm <pipeline>")
    .description("delete a pipeline (its run is stopped)")
    .option(...nodeOption)
    .action(async (which: string, options: NodeOption, command: Command) => {
      const { connection, nodeId, client } = await open(command, options);
      const pipeline = await findPipeline(connection, client, nodeId, which);
      await connection.call(client.deletePipeline({ nodeId, id: pipeline.id }));
      process.stdout.write(`deleted ${pipeline.name} (${pipeline.id})\n`);
    });

  pipelines
    .command("start <pipeline>")
    .description("start a pipeline, by id or name; prints the run id")
    .option(...nodeOption)
    .action(async (which: string, options: NodeOption, command: Command) => {
      const { globals, connection, nodeId, client } = await open(command, options);
      const pipeline = await findPipeline(connection, client, nodeId, which);
      const { runId } = await connection.call(
        client.startPipeline({ nodeId, pipelineIdentifier: { case: "id", value: pipeline.id } }),
      );
      if (globals.output === "json") printJson({ runId });
      else process.stdout.write(`${runId}\n`);
    });

  pipelines
    .command("stop <pipeline>")
    .description("stop a pipeline, by id, name or run id")
    .option(...nodeOption)
    .action(async (which: string, options: NodeOption, command: Command) => {
      const { connection, nodeId, client } = await open(command, options);
      if (which.startsWith("run-")) {
        await connection.call(
          client.stopPipeline({ nodeId, pipelineIdentifier: { case: "runId", value: which } }),
        );
      } else {
        const pipeline = await findPipeline(connection, client, nodeId, which);
        await connection.call(
          client.stopPipeline({ nodeId, pipelineIdentifier: { case: "id", value: pipeline.id } }),
        );
      }
      process.stdout.write(`stopped ${which}\n`);
    });

  pipelines
    .command("logs <run>")
    .description("a run's log (a run id, or a pipeline's current run): the last lines, -f to follow")
    .option(...nodeOption)
    .option("-n, --lines <n>", "the last n lines first", "100")
    .option("-f, --follow", "keep streaming until the run ends or Ctrl-C", false)
    .action(
      async (which: string, options: NodeOption & { lines: string; follow: boolean }, command: Command) => {
        const { globals, connection, nodeId, client } = await open(command, options, true);
        const runId = await runIdOf(connection, client, nodeId, which);
        await follow(connection, async (signal) => {
          // Without -f: the tail (the first batch), or nothing if none comes within a second.
          const local = new AbortController();
          signal.addEventListener("abort", () => local.abort(), { once: true });
          const idle = options.follow ? undefined : setTimeout(() => local.abort(), 1000);
          try {
            const stream = client.openLogStream(
              { nodeId, runId, options: { optionalLines: { case: "lines", value: BigInt(options.lines) } } },
              { signal: local.signal },
            );
            for await (const batch of stream) {
              for (const m of batch.messages) {
                const at = new Date(
                  m.timestamp ? Number(m.timestamp.seconds) * 1000 + m.timestamp.nanos / 1e6 : Date.now(),
                );
                const level = Level[m.level] ?? String(m.level);
                process.stdout.write(
                  globals.output === "json"
                    ? `${JSON.stringify({ timestamp: at.toISOString(), level, message: m.message })}\n`
                    : `${at.toISOString()} ${level.padEnd(5)} ${m.message}\n`,
                );
              }
              if (!options.follow) {
                local.abort();
                break;
              }
            }
          } catch (error) {
            if (!local.signal.aborted || signal.aborted) throw error;
          } finally {
            clearTimeout(idle);
          }
        });
      },
    );

  pipelines
    .command("telemetry <run>")
    .description("a run's telemetry (a run id, or a pipeline's current run): one sample, -f to follow")
    .option(...nodeOption)
    .option("-f, --follow", "one sample a second until the run ends or Ctrl-C", false)
    .action(async (which: string, options: NodeOption & { follow: boolean }, command: Command) => {
      const { globals, connection, nodeId, client } = await open(command, options, true);
      const runId = await runIdOf(connection, client, nodeId, which);
      await follow(connection, async (signal, done) => {
        for await (const sample of client.openTelemetryStream({ nodeId, runId }, { signal })) {
          if (globals.output === "json")
            process.stdout.write(`${JSON.stringify(toJson(TelemetrySampleSchema, sample))}\n`);
          else {
            const lines = sample.kpis.map(
              (k) => `${k.id}.${k.field} = ${k.value.case === undefined ? "-" : String(k.value.value)}`,
            );
            process.stdout.write(`${lines.join("\n")}\n\n`);
          }
          if (!options.follow) {
            done();
            break;
          }
        }
      });
    });
}
