import { create } from "@bufbuild/protobuf";
import { timestampFromMs } from "@bufbuild/protobuf/wkt";
import type { HandlerContext, ServiceImpl } from "@connectrpc/connect";
import { CorralError } from "../../base/errors.ts";
import type { NodeRegistry } from "../../core/nodes/node-registry.ts";
import type { NodeOpsService } from "../../gen/corral/v1/node_ops_pb.ts";
import {
  type CommandRequest,
  CommandRequestSchema,
  type CommandResponse,
  type LogEntry,
  type LogFilter,
  LogFilterSchema,
  NodeAgent,
} from "../../gen/picontroller_pb.ts";
import type { PipelinesService } from "../../gen/pipelines_pb.ts";
import {
  StartPipelineRequestSchema,
  type StartPipelineResponse,
  StopPipelineRequestSchema,
} from "../../gen/pipelines_pb.ts";
import { fromConnectError } from "../../rpc/connect-errors.ts";
import type { AgentReach, ClusterFacts } from "../face-context.ts";
import { controllerPipelinesService } from "../nanoping/pipelines-relay.ts";

const maxNodeLength = 256;

/** What node operations touch: the controller's own node (here) and the agents of the others (relayed). */
export interface NodeOpsServiceDeps {
  readonly facts: ClusterFacts;
  readonly registry: NodeRegistry;
  readonly agents: AgentReach;
  readonly localNodeAgent: Partial<ServiceImpl<typeof NodeAgent>>;
  readonly localPipelines?: Partial<ServiceImpl<typeof PipelinesService>>;
}

/**
 * corral.v1.NodeOpsService: the browser's way to a node's log and allow-listed commands. The target
 * node is a request field (browsers cannot be trusted to set relay headers consistently), and each call
 * becomes the node's own NodeAgent call, so the agent's allow-list, limits and audit apply unchanged.
 */
export function nodeOpsService(context: NodeOpsServiceDeps): Partial<ServiceImpl<typeof NodeOpsService>> {
  const isOwnNode = async (target: string) => {
    if (target === "" || target === context.facts.controllerNodeId || target === context.facts.controllerName)
      return true;
    return (await context.registry.get(target)).id === context.facts.controllerNodeId;
  };
  const checkTarget = (node: string) => {
    if (node.length > maxNodeLength) throw CorralError.invalidArgument("node", "is too long");
    return node.trim();
  };
  const unreachable = (name: string) => (error: unknown) => {
    const corral = fromConnectError(error);
    if (corral.code === "UNAVAILABLE")
      return new CorralError("UNAVAILABLE", `node ${name} cannot be reached: ${corral.message}`);
    return corral;
  };

  async function* entriesOf(target: string, filter: LogFilter, ctx: HandlerContext) {
    if (await isOwnNode(target)) {
      const local = context.localNodeAgent.streamLogs;
      if (local === undefined) throw new CorralError("UNIMPLEMENTED", "the controller's node serves no logs");
      yield* local.call(context.localNodeAgent, filter, ctx) as AsyncIterable<LogEntry>;
      return;
    }
    const node = await context.agents.resolve(target);
    const client = await context.agents.client(NodeAgent, node);
    try {
      // No deadline: a tail lasts until the browser cancels it.
      yield* client.streamLogs(filter, { signal: ctx.signal, timeoutMs: 0 });
    } catch (error) {
      throw unreachable(node.name)(error);
    }
  }

  async function execute(target: string, request: CommandRequest, ctx: HandlerContext) {
    if (await isOwnNode(target)) {
      const local = context.localNodeAgent.executeCommand;
      if (local === undefined)
        throw new CorralError("UNIMPLEMENTED", "the controller's node runs no commands");
      return (await local.call(context.localNodeAgent, request, ctx)) as CommandResponse;
    }
    const node = await context.agents.resolve(target);
    const client = await context.agents.client(NodeAgent, node);
    const timeoutMs = ctx.timeoutMs();
    try {
      return await client.executeCommand(request, {
        signal: ctx.signal,
        ...(timeoutMs === undefined ? {} : { timeoutMs }),
      });
    } catch (error) {
      throw unreachable(node.name)(error);
    }
  }

  const pipelines = controllerPipelinesService(context, context.localPipelines ?? {});
  const pipelineNode = async (node: string) => {
    const target = checkTarget(node);
    return target === "" ? context.facts.controllerNodeId : (await context.registry.get(target)).id;
  };

  return {
    async setPipelineRunning(request, ctx) {
      const { startPipeline, stopPipeline } = pipelines;
      if (startPipeline === undefined || stopPipeline === undefined)
        throw new CorralError("UNIMPLEMENTED", "this controller relays no pipelines");
      if (request.id === "") throw CorralError.invalidArgument("id", "is empty; name the pipeline by id");
      const nodeId = await pipelineNode(request.node);
      const identifier = { case: "id" as const, value: request.id };
      if (request.running) {
        const started = (await startPipeline(
          create(StartPipelineRequestSchema, { nodeId, pipelineIdentifier: identifier }),
          ctx,
        )) as StartPipelineResponse;
        return { runId: started.runId };
      }
      await stopPipeline(create(StopPipelineRequestSchema, { nodeId, pipelineIdentifier: identifier }), ctx);
      return { runId: "" };
    },

    async *tailLogs(request, ctx) {
      const filter = create(LogFilterSchema, {
        source: request.source,
        level: request.level,
        contains: request.contains,
        tail: request.tail,
        follow: true,
      });
      for await (const entry of entriesOf(checkTarget(request.node), filter, ctx)) {
        yield {
          time: timestampFromMs(Number(entry.timestamp)),
          level: entry.level,
          message: entry.message,
          source: entry.source,
          fields: entry.fields,
        };
      }
    },

    async exec(request, ctx) {
      const command = create(CommandRequestSchema, {
        command: request.command,
        args: request.args,
        timeoutSeconds: request.timeoutSeconds,
      });
      const result = await execute(checkTarget(request.node), command, ctx);
      return {
        exitCode: result.exitCode,
        stdout: result.stdout,
        stderr: result.stderr,
        truncated: result.truncated,
        timedOut: result.timedOut,
        durationMs: result.durationMs,
        auditId: result.auditId,
      };
    },
  };
}
