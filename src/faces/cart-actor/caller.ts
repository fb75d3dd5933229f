import type { HandlerContext } from "@connectrpc/connect";
import type { Caller } from "../../core/ownership/ownership.ts";
import { principalOf } from "../../rpc/principal-context.ts";

/**
 * The member a caller speaks for: a node speaks for itself; a caller on the loopback bridge is on the
 * controller's machine, so it speaks for the controller's own node (as an actor host on an agent's node
 * speaks for that node through the agent's local API). Operators speak for no member.
 */
export function callerOf(ctx: HandlerContext, controllerNodeId: string): Caller {
  const principal = principalOf(ctx);
  if (principal.kind === "node") return { nodeId: principal.nodeId, isNode: true };
  if (principal.kind === "local") return { nodeId: controllerNodeId };
  return {};
}
