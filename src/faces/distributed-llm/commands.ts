import { CorralError } from "../../base/errors.ts";
import { clusterTotals } from "../../core/metrics/cluster-metrics.ts";
import type { ModelRegistry } from "../../core/models/model-registry.ts";
import { describeRanges } from "../../core/models/model-registry.ts";
import type { NodeLoads } from "../../core/nodes/node-load.ts";
import type { NodeRegistry } from "../../core/nodes/node-registry.ts";
import { defaults } from "../../defaults.ts";
import type { ClusterFacts } from "../face-context.ts";
import { count, formatCounts, placed, table } from "./command-text.ts";
import { isMember, memoryInUse, namesOf } from "./messages.ts";
import { describeLayerMoves } from "./placement-text.ts";

/** What the TUI's commands touch: the nodes and their loads, models and placement, this cluster's names. */
export interface CommandDeps {
  readonly registry: NodeRegistry;
  readonly models: ModelRegistry;
  readonly loads: NodeLoads;
  readonly facts: ClusterFacts;
}

/**
 * TUIService.ExecuteCommand: a fixed registry of named cluster commands, run in-process against the core.
 * Nothing here ever reaches a shell; arguments are plain words matched against the registry.
 *
 * Exit codes: 0 done; 1 the command failed (a model or node not found, ...); 2 wrong usage (arguments,
 * options); 127 no such command.
 */
export interface CommandResult {
  readonly success: boolean;
  readonly output: string;
  readonly error: string;
  readonly exitCode: number;
}

export const exitCodes = { ok: 0, failed: 1, usage: 2, unknown: 127 } as const;

interface CommandSpec {
  readonly usage: string;
  readonly summary: string;
  /** Exactly this many arguments. */
  readonly args: number;
  /** Options it accepts (`format`: table or json). */
  readonly options: readonly string[];
  readonly run: (context: CommandDeps, args: readonly string[], json: boolean) => Promise<string>;
}

const commands: Readonly<Record<string, CommandSpec>> = {
  help: {
    usage: "help",
    summary: "list the commands",
    args: 0,
    options: [],
    run: async () => helpText(),
  },
  status: {
    usage: "status",
    summary: "the cluster at a glance: nodes by state, models by placement, layers in use",
    args: 0,
    options: ["format"],
    run: async (context, _args, json) => {
      const [{ nodes }, { models }, drained] = await Promise.all([
        context.registry.list(),
        context.models.list(),
        context.models.drained(),
      ]);
      const members = nodes.filter(isMember);
      const totals = clusterTotals(members, memoryInUse(context.loads));
      const byStatus = count(members.map((node) => node.status));
      const byState = count(models.map((model) => model.state));
      if (json) {
        return JSON.stringify({
          clusterId: context.facts.clusterId,
          controller: context.facts.controllerName,
          nodes: byStatus,
          models: byState,
          drained: [...drained].length,
          layers: { allocated: totals.allocatedLayers, total: totals.totalLayers },
          utilization: totals.utilization,
        });
      }
      return [
        `cluster     ${context.facts.clusterId} (controller ${context.facts.controllerName})`,
        `nodes       ${members.length} (${formatCounts(byStatus)})${drained.size > 0 ? `, ${drained.size} drained` : ""}`,
        `models      ${models.length}${models.length > 0 ? ` (${formatCounts(byState)})` : ""}`,
        `layers      ${totals.allocatedLayers} of ${totals.totalLayers} in use (${(totals.utilization * 100).toFixed(1)}%)`,
      ].join("\n");
    },
  },
  nodes: {
    usage: "nodes",
    summary: "every member: status, model layers in use, GPUs",
    args: 0,
    options: ["format"],
    run: async (context, _args, json) => {
      const [{ nodes }, drained] = await Promise.all([context.registry.list(), context.models.drained()]);
      const members = nodes.filter(isMember);
      if (json) {
        return JSON.stringify(
          members.map((node) => ({
            node_id: node.id,
            name: node.name,
            status: node.status,
            drained: drained.has(node.id),
            used_layers: node.resources.usedLayers,
            max_layers: node.resources.maxLayers,
            gpus: node.resources.gpus.length,
          })),
        );
      }
      return table(
        ["node", "status", "layers", "gpus", "address"],
        members.map((node) => [
          node.name,
          drained.has(node.id) ? `${node.status} (drained)` : node.status,
          `${node.resources.usedLayers}/${node.resources.maxLayers}`,
          String(node.resources.gpus.length),
          node.port === 0 ? "-" : `${node.address}:${node.port}`,
        ]),
      );
    },
  },
  models: {
    usage: "models",
    summary: "every model and where its layers are",
    args: 0,
    options: ["format"],
    run: async (context, _args, json) => {
      const [{ nodes }, { models }] = await Promise.all([context.registry.list(), context.models.list()]);
      const nameOf = namesOf(nodes);
      if (json) {
        return JSON.stringify(
          models.map((model) => ({
            id: model.id,
            name: model.name,
            version: model.version,
            layer_count: model.layerCount,
            state: model.state,
            node_assignments: model.assignments.map((range) => ({
              node_id: range.nodeId,
              node: nameOf(range.nodeId),
              start: range.start,
              count: range.count,
            })),
          })),
        );
      }
      return table(
        ["model", "version", "layers", "state", "placement"],
        models.map((model) => [
          model.name,
          model.version || "-",
          `${placed(model)}/${model.layerCount}`,
          model.state,
          describeRanges(model.assignments, nameOf) || "-",
        ]),
      );
    },
  },
  assign: {
    usage: "assign <model>",
    summary: "place a model's layers on healthy nodes (GPU nodes first, fewest nodes)",
    args: 1,
    options: [],
    run: async (context, [model = ""]) => {
      const { model: placedModel } = await context.models.assign(model);
      return `${placedModel.name}: ${placedModel.message}`;
    },
  },
  unassign: {
    usage: "unassign <model>",
    summary: "free every layer of a model (it stays registered)",
    args: 1,
    options: [],
    run: async (context, [model = ""]) => {
      const { model: freed } = await context.models.unassign(model);
      return `${freed.name}: ${freed.message}`;
    },
  },
  drain: {
    usage: "drain <node>",
    summary: "move a node's model layers to other nodes; it takes no new ones until undrained",
    args: 1,
    options: [],
    run: async (context, [node = ""]) => {
      const drained = await context.models.drain(node);
      return `${drained.node.name} is drained: ${describeLayerMoves(drained.outcome, drained.node.id)}`;
    },
  },
  undrain: {
    usage: "undrain <node>",
    summary: "let a drained node take model layers again (nothing moves back by itself)",
    args: 1,
    options: [],
    run: async (context, [node = ""]) => {
      const { node: record } = await context.models.undrain(node);
      return `${record.name} takes model layers again`;
    },
  },
};

export const commandNames: readonly string[] = Object.keys(commands);

function helpText(): string {
  const width = Math.max(...Object.values(commands).map((spec) => spec.usage.length));
  return [
    "commands (options: format=json for status, nodes and models):",
    ...Object.values(commands).map((spec) => `  ${spec.usage.padEnd(width)}  ${spec.summary}`),
  ].join("\n");
}

/**
 * Runs one command. `command` may carry its arguments after whitespace ("assign llama"); they come
 * before `args`. Failures of the command are answered in the result, not as gRPC errors; a fault of the
 * controller itself (the store, say) is thrown.
 */
export async function executeCommand(
  context: CommandDeps,
  request: { command: string; args: readonly string[]; options: Readonly<Record<string, string>> },
): Promise<CommandResult> {
  const { maxCommandArgs, maxCommandArgLength } = defaults.distributedLlm;
  const words = request.command
    .trim()
    .split(/\s+/u)
    .filter((word) => word !== "");
  const [first, ...inline] = words;
  if (first === undefined) throw CorralError.invalidArgument("command", `is empty; try "help"`);
  const args = [...inline, ...request.args];
  if (args.length > maxCommandArgs)
    throw CorralError.invalidArgument("args", `has ${args.length} arguments; the limit is ${maxCommandArgs}`);
  for (const word of [first, ...args]) {
    if (word.length > maxCommandArgLength)
      throw CorralError.invalidArgument("args", `holds a word longer than ${maxCommandArgLength} characters`);
  }
  const name = first.toLowerCase();
  const spec = Object.hasOwn(commands, name) ? commands[name] : undefined;
  if (spec === undefined) {
    return fail(
      exitCodes.unknown,
      `unknown command "${first}"; known commands: ${commandNames.join(", ")} (try "help")`,
    );
  }
  if (args.length !== spec.args) {
    return fail(
      exitCodes.usage,
      `usage: ${spec.usage} (${args.length} argument${args.length === 1 ? "" : "s"} given)`,
    );
  }
  for (const [key, value] of Object.entries(request.options)) {
    if (!spec.options.includes(key)) {
      return fail(
        exitCodes.usage,
        `"${name}" takes no option "${key}"${spec.options.length > 0 ? `; options: ${spec.options.join(", ")}` : ""}`,
      );
    }
    if (key === "format" && value !== "table" && value !== "json")
      return fail(exitCodes.usage, `format must be table or json, not "${value}"`);
  }
  try {
    const output = await spec.run(context, args, request.options.format === "json");
    return {
      success: true,
      output: output.endsWith("\n") ? output : `${output}\n`,
      error: "",
      exitCode: exitCodes.ok,
    };
  } catch (error) {
    if (!(error instanceof CorralError)) throw error;
    if (error.code === "INVALID_ARGUMENT") return fail(exitCodes.usage, error.message);
    if (["NOT_FOUND", "FAILED_PRECONDITION", "ALREADY_EXISTS", "ABORTED"].includes(error.code))
      return fail(exitCodes.failed, error.message);
    throw error;
  }
}

function fail(exitCode: number, error: string): CommandResult {
  return { success: false, output: "", error, exitCode };
}
