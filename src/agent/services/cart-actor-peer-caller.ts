import type { Client, HandlerContext } from "@connectrpc/connect";
import { CorralError, ErrorCode } from "../../base/errors.ts";
import type { MembersService } from "../../gen/corral/v1/members_pb.ts";
import { fromConnectError } from "../../rpc/connect-errors.ts";
import { principalOf } from "../../rpc/principal-context.ts";

/**
 * Another node calling this agent's cluster listener (undefined for this node's own actor host on the
 * local API, for controllers and for admins). What the agent passes on to the controller goes with the
 * agent's own identity, so for such a caller the agent first makes sure the request needs nothing but
 * the caller's own rights: a node acts only for itself, on any member's listener.
 */
export function peerNodeOf(ctx: HandlerContext, selfNodeId: string): string | undefined {
  const principal = principalOf(ctx);
  return principal.kind === "node" && principal.nodeId !== selfNodeId ? principal.nodeId : undefined;
}

/** The node id of the member a go-cart-actor host (host:port) or node id names, as the directory lists it. */
export async function memberIdOf(
  members: Client<typeof MembersService>,
  host: string,
  signal: AbortSignal,
): Promise<string | undefined> {
  const wanted = host.trim();
  const listed = await members.listMembers({}, { signal }).catch((error: unknown) => {
    throw fromConnectError(error);
  });
  return listed.members.find((m) => m.host === wanted || m.nodeId === wanted)?.nodeId;
}

/** The member that owns `key` now (claim or rendezvous), or undefined. */
export async function ownerIdOf(
  members: Client<typeof MembersService>,
  key: string,
  signal: AbortSignal,
): Promise<string | undefined> {
  try {
    const answer = await members.resolveOwner({ key }, { signal });
    return answer.owner?.nodeId || undefined;
  } catch (error) {
    const corral = fromConnectError(error);
    // A malformed key is the controller's to refuse; it owns nothing here.
    if (corral.code === ErrorCode.InvalidArgument || corral.code === ErrorCode.NotFound) return undefined;
    throw corral;
  }
}

export function onlyForItself(peer: string, what: string): CorralError {
  return new CorralError(
    ErrorCode.PermissionDenied,
    `node ${peer} may ${what}; a node acts only for itself`,
    {
      details: { "denied-by": "agent-control-plane" },
    },
  );
}
