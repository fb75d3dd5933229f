import type { MessageInitShape } from "@bufbuild/protobuf";
import type { HandlerContext } from "@connectrpc/connect";
import { parseDuration } from "../../base/duration.ts";
import { CorralError } from "../../base/errors.ts";
import { untilAborted } from "../../base/until-aborted.ts";
import type { EventFeed } from "../../core/events/event-feed.ts";
import type { NodeRecord } from "../../core/nodes/node.ts";
import type { NodeRegistry } from "../../core/nodes/node-registry.ts";
import { defaults } from "../../defaults.ts";
import type { WatchAccessResponseSchema } from "../../gen/corral/v1/agent_pb.ts";
import { NodeRole } from "../../gen/corral/v1/nodes_pb.ts";
import { mergeStreams } from "../../rpc/merge-streams.ts";
import { recheckPrincipal } from "../../rpc/principal-context.ts";
import { revokedPrefix } from "../../security/certificate-inventory.ts";
import type { Store } from "../../store/store.ts";

type AccessMessage = MessageInitShape<typeof WatchAccessResponseSchema>;
type Change = {
  revokedSerials?: string[];
  unrevokedSerials?: string[];
  members?: { id: string; role: NodeRole }[];
  goneMembers?: string[];
};

/** A certificate naming a node works while the node's record exists and has not left (the resolver's rule). */
const isMember = (node: NodeRecord | undefined): node is NodeRecord =>
  node !== undefined && node.status !== "left";

const roleOf = (node: NodeRecord) => (node.role === "controller" ? NodeRole.CONTROLLER : NodeRole.AGENT);

/** What an access watch reads: the members, the revocation list in the store, and the feed of changes. */
export interface AccessWatchDeps {
  readonly registry: NodeRegistry;
  readonly store: Store;
  readonly feed: EventFeed;
}

/**
 * AgentService/WatchAccess: the revocation list and the membership an agent checks its own callers
 * against, pushed as they change, so a revocation or a removal holds on every agent's listener within
 * a message's travel time and no call on an agent costs a round trip to the controller. Only what the
 * principal checks read is sent (serials, member ids and roles): a status flap or a label change of a
 * member sends nothing. Ends with OK after `heartbeatStream.maxAge`, so streams spread again after a
 * failover; the agent opens a new one and gets a fresh view.
 */
export async function* watchAccess(
  { registry, store, feed }: AccessWatchDeps,
  ctx: HandlerContext,
  stopping: AbortSignal,
): AsyncGenerator<AccessMessage> {
  const caller = await recheckPrincipal(ctx);
  if (caller.kind !== "node")
    throw new CorralError(
      "PERMISSION_DENIED",
      "WatchAccess is for the cluster's agents, about their callers",
    );
  const signal = AbortSignal.any([
    ctx.signal,
    stopping,
    AbortSignal.timeout(parseDuration(defaults.heartbeatStream.maxAge)),
  ]);

  const { nodes, revision: nodesRevision } = await registry.list();
  const revoked: string[] = [];
  let revokedRevision: number | undefined;
  let startAfter: string | undefined;
  for (let page = 0; page < 10_000; page++) {
    const result = await store.list(revokedPrefix, {
      limit: 1_000,
      ...(startAfter === undefined ? {} : { startAfter }),
    });
    // Watching from the first page's revision replays whatever changed while the rest was read.
    revokedRevision ??= result.revision;
    revoked.push(...result.items.map((kv) => kv.key.slice(revokedPrefix.length)));
    if (!result.more || result.items.length === 0) break;
    startAfter = result.items.at(-1)?.key;
  }
  yield {
    reset: true,
    revokedSerials: revoked,
    members: nodes.filter(isMember).map((node) => ({ id: node.id, role: roleOf(node) })),
  };

  const memberChanges = async function* (): AsyncGenerator<Change> {
    for await (const event of feed.watch({ fromRevision: nodesRevision + 1, kinds: ["node"], signal })) {
      const now = event.type === "node.put" ? event.node : undefined;
      const before = event.type === "node.put" ? event.previous : event.node;
      if (isMember(now)) {
        if (!isMember(before) || before.role !== now.role)
          yield { members: [{ id: now.id, role: roleOf(now) }] };
      } else if (isMember(before)) {
        yield { goneMembers: [before.id] };
      }
    }
  };
  const revocationChanges = async function* (): AsyncGenerator<Change> {
    const from = (revokedRevision ?? 0) + 1;
    for await (const batch of store.watch(from, { prefix: revokedPrefix, signal })) {
      for (const event of batch) {
        const serial = event.key.slice(revokedPrefix.length);
        yield event.type === "put" ? { revokedSerials: [serial] } : { unrevokedSerials: [serial] };
      }
    }
  };

  for await (const change of untilAborted(mergeStreams([memberChanges(), revocationChanges()]), signal)) {
    // The stream outlives the check made when it opened: a removed or revoked agent hears no more.
    const now = await recheckPrincipal(ctx);
    if (now.kind !== "node" || now.nodeId !== caller.nodeId)
      throw new CorralError("UNAUTHENTICATED", "the stream's credentials no longer name this node");
    yield change;
  }
}
