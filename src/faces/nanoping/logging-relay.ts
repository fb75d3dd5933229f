import type { ServiceImpl } from "@connectrpc/connect";
import { CorralError } from "../../core/errors.ts";
import { LoggingService } from "../../gen/logging_pb.ts";
import type { FaceContext } from "../face-context.ts";
import { guardHandlers } from "../guard-handlers.ts";
import { relayToNode } from "../node-relay.ts";

/**
 * LoggingService on the controller: routed by `node_id` like PipelinesService — served here for the
 * controller's own node (also when `node_id` is empty), passed to the owning agent over mTLS otherwise.
 * Unknown node: NOT_FOUND; a node that does not offer LOGGING: FAILED_PRECONDITION; unreachable:
 * UNAVAILABLE. Who may read is the access table's (the same people as NodeAgent StreamLogs); both
 * checks run before anything reaches the node.
 */
export function controllerLoggingService(
  context: FaceContext,
  local: Partial<ServiceImpl<typeof LoggingService>>,
): Partial<ServiceImpl<typeof LoggingService>> {
  const relayed = relayToNode(LoggingService, context, local, (request) => nodeIdOf(request));
  const check = async (request: unknown) => {
    const nodeId = nodeIdOf(request);
    if (nodeId === "") return;
    const node = await context.registry.get(nodeId);
    if (!node.services.includes("LOGGING"))
      throw new CorralError("FAILED_PRECONDITION", `node ${node.name} does not offer the LOGGING service`);
  };
  return guardHandlers(LoggingService, relayed, check);
}

function nodeIdOf(request: unknown): string {
  return ((request as { nodeId?: string }).nodeId ?? "").trim();
}
