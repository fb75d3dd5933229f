import type { ServiceImpl } from "@connectrpc/connect";
import { CorralError } from "../../core/errors.ts";
import { PipelinesService } from "../../gen/pipelines_pb.ts";
import type { FaceContext } from "../face-context.ts";
import { guardHandlers } from "../guard-handlers.ts";
import { relayToNode } from "../node-relay.ts";

/**
 * PipelinesService on the controller: every call names its node (`node_id`); it runs here for the
 * controller's own node and is passed to the owning agent over mTLS otherwise. Unknown node:
 * NOT_FOUND; a node that does not offer PIPELINES: FAILED_PRECONDITION; node unreachable: UNAVAILABLE.
 */
export function controllerPipelinesService(
  context: FaceContext,
  local: Partial<ServiceImpl<typeof PipelinesService>>,
): Partial<ServiceImpl<typeof PipelinesService>> {
  const relayed = relayToNode(PipelinesService, context, local, (request) => nodeIdOf(request));
  const check = async (request: unknown) => {
    const nodeId = nodeIdOf(request);
    if (nodeId === "")
      throw CorralError.invalidArgument("node_id", "must name the node that owns the pipeline");
    const node = await context.registry.get(nodeId);
    if (!node.services.includes("PIPELINES"))
      throw new CorralError("FAILED_PRECONDITION", `node ${node.name} does not offer the PIPELINES service`);
  };
  return guardHandlers(PipelinesService, relayed, check);
}

function nodeIdOf(request: unknown): string {
  return ((request as { nodeId?: string }).nodeId ?? "").trim();
}
