import type { HandlerContext, ServiceImpl } from "@connectrpc/connect";
import { CorralError } from "../../base/errors.ts";
import { LoggingService } from "../../gen/logging_pb.ts";
import { checkAccess, methodPath } from "../../rpc/authorize.ts";
import { principalRecheckKey, recheckPrincipal } from "../../rpc/principal-context.ts";
import { accessRuleFor } from "../../security/access-table.ts";
import { guardHandlers } from "../guard-handlers.ts";
import { type RelayDeps, relayToNode } from "../node-relay.ts";

/**
 * LoggingService on the controller: routed by `node_id` like PipelinesService — served here for the
 * controller's own node (also when `node_id` is empty), passed to the owning agent over mTLS otherwise.
 * Unknown node: NOT_FOUND; a node that does not offer LOGGING: FAILED_PRECONDITION; unreachable:
 * UNAVAILABLE. Who may read is the access table's (the same people as NodeAgent StreamLogs); both
 * checks run before anything reaches the node. A log is followed for as long as the caller likes, so
 * the caller is identified again before every batch: a revoked token or certificate (or a removed
 * node) ends the stream at its next batch, with the status a new call would get.
 */
export function controllerLoggingService(
  context: RelayDeps,
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
  const guarded = guardHandlers(LoggingService, relayed, check) as Record<string, StreamHandler | undefined>;
  const impl: Record<string, StreamHandler> = {};
  for (const method of LoggingService.methods) {
    const handler = guarded[method.localName];
    if (handler === undefined) continue;
    impl[method.localName] = async function* (request, ctx) {
      for await (const message of handler(request, ctx)) {
        await stillAllowed(ctx);
        yield message;
      }
    };
  }
  return impl as Partial<ServiceImpl<typeof LoggingService>>;
}

type StreamHandler = (request: unknown, ctx: HandlerContext) => AsyncIterable<unknown>;

/** The caller, identified again, may still call this method (in-process calls have no one to recheck). */
async function stillAllowed(ctx: HandlerContext): Promise<void> {
  if (ctx.values.get(principalRecheckKey) === undefined) return;
  const path = methodPath(ctx);
  checkAccess(await recheckPrincipal(ctx), accessRuleFor(path), path);
}

function nodeIdOf(request: unknown): string {
  return ((request as { nodeId?: string }).nodeId ?? "").trim();
}
