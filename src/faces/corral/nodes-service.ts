import type { ServiceImpl } from "@connectrpc/connect";
import { CorralError } from "../../base/errors.ts";
import type { EventFeed } from "../../core/events/event-feed.ts";
import type { NodeRecord } from "../../core/nodes/node.ts";
import { matchesNodeFilter, validateNodeFilter } from "../../core/nodes/node-filter.ts";
import type { NodeRegistry } from "../../core/nodes/node-registry.ts";
import { NodeEventType, type NodesService, type WatchNodesResponse } from "../../gen/corral/v1/nodes_pb.ts";
import { filterFromMessage, nodeToMessage } from "../../wire/corral-node.ts";

type Impl = ServiceImpl<typeof NodesService>;

/** What the nodes face touches: the registry, and the feed for watches. */
export interface NodesServiceDeps {
  readonly registry: NodeRegistry;
  readonly feed: EventFeed;
}

export function nodesService({ registry, feed }: NodesServiceDeps): Partial<Impl> {
  return {
    async listNodes(request) {
      const { nodes, revision } = await registry.list(filterFromMessage(request.filter));
      return { nodes: nodes.map(nodeToMessage), revision: BigInt(revision) };
    },

    async getNode(request) {
      if (request.node.trim() === "")
        throw CorralError.invalidArgument("node", "is empty; give a node id or name");
      return { node: nodeToMessage(await registry.get(request.node)) };
    },

    async removeNode(request) {
      if (request.node.trim() === "")
        throw CorralError.invalidArgument("node", "is empty; give a node id or name");
      const node = await registry.get(request.node);
      if (node.role === "controller") {
        throw new CorralError(
          "FAILED_PRECONDITION",
          `${node.name} is a controller; it leaves when it is shut down`,
        );
      }
      return { node: nodeToMessage(await registry.remove(node.id)) };
    },

    async *watchNodes(request, ctx) {
      const filter = validateNodeFilter(filterFromMessage(request.filter));
      if (request.fromRevision < 0n)
        throw CorralError.invalidArgument("from_revision", "must not be negative");
      let from = Number(request.fromRevision);
      if (from === 0) {
        const listing = await registry.list(filter);
        const revision = BigInt(listing.revision);
        for (const node of listing.nodes) {
          yield {
            type: NodeEventType.SNAPSHOT,
            revision,
            node: nodeToMessage(node),
          } satisfies Partial<WatchNodesResponse>;
        }
        yield { type: NodeEventType.SYNCED, revision };
        from = listing.revision + 1;
      }
      for await (const event of feed.watch({ fromRevision: from, kinds: ["node"], signal: ctx.signal })) {
        const revision = BigInt(event.revision);
        const matches = (node: NodeRecord | undefined) =>
          node !== undefined && matchesNodeFilter(node, filter);
        // A delete carries the node as it was; a put that stops matching leaves the watcher's view too.
        const before = event.type === "node.deleted" ? event.node : event.previous;
        if (event.type === "node.put" && event.node !== undefined && matches(event.node)) {
          yield { type: NodeEventType.PUT, revision, node: nodeToMessage(event.node) };
        } else if (before !== undefined && matches(before)) {
          yield { type: NodeEventType.DELETED, revision, node: nodeToMessage(event.node ?? before) };
        }
      }
    },
  };
}
