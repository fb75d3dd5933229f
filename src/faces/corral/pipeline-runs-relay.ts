import type { ServiceImpl } from "@connectrpc/connect";
import { CorralError } from "../../base/errors.ts";
import type { NodeRegistry } from "../../core/nodes/node-registry.ts";
import { PipelineRunsService } from "../../gen/corral/v1/pipelines_pb.ts";
import { guardHandlers } from "../guard-handlers.ts";
import { type RelayDeps, relayToNode } from "../node-relay.ts";

export interface PipelineRunsRelayDeps extends RelayDeps {
  readonly registry: NodeRegistry;
  readonly localPipelineRuns?: Partial<ServiceImpl<typeof PipelineRunsService>>;
}

/**
 * On the controller: runs here for the controller's own node (`node_id` empty or the controller's),
 * relayed to the owning agent over mTLS otherwise; a node without the PIPELINES service is
 * FAILED_PRECONDITION, an unknown one NOT_FOUND.
 */
export function pipelineRunsRelay(
  context: PipelineRunsRelayDeps,
): Partial<ServiceImpl<typeof PipelineRunsService>> {
  const nodeIdOf = (request: unknown) => ((request as { nodeId?: string }).nodeId ?? "").trim();
  const relayed = relayToNode(PipelineRunsService, context, context.localPipelineRuns ?? {}, nodeIdOf);
  const check = async (request: unknown) => {
    const nodeId = nodeIdOf(request);
    if (nodeId === "") return;
    const node = await context.registry.get(nodeId);
    if (!node.services.includes("PIPELINES"))
      throw new CorralError("FAILED_PRECONDITION", `node ${node.name} does not offer the PIPELINES service`);
  };
  return guardHandlers(PipelineRunsService, relayed, check);
}
