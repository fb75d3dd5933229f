import type { ServiceImpl } from "@connectrpc/connect";
import { CorralError } from "../../base/errors.ts";
import type { JoinRequestBook } from "../../core/admission/join-requests.ts";
import type { EventFeed } from "../../core/events/event-feed.ts";
import { metadataEquals } from "../../core/nodes/metadata.ts";
import type { NodeRecord } from "../../core/nodes/node.ts";
import { matchesNodeFilter, type NodeFilter } from "../../core/nodes/node-filter.ts";
import type { NodeRegistry } from "../../core/nodes/node-registry.ts";
import type {
  GetNodesRequest,
  HubServerService,
  StreamNodesUpdateResponse,
} from "../../gen/hub_server_pb.ts";
import { principalOf } from "../../rpc/principal-context.ts";
import { describePrincipal } from "../../security/principal.ts";
import type { Store } from "../../store/store.ts";
import { metadataFromItem, nanopingNode, serviceFromEnum } from "../../wire/nanoping-node.ts";
import { requestingNode } from "./join-requests.ts";

/** NanoPing's filters: every metadata key with an equal value of the same oneof type, every service. */
export function hubNodeFilter(request: GetNodesRequest): NodeFilter {
  const filter: NodeFilter = { statuses: ["pending", "ready", "suspect", "down"] };
  const metadata = Object.entries(request.metadataFilters);
  if (metadata.length > 0) {
    filter.metadata = Object.fromEntries(
      metadata.map(([key, item]) => [key, metadataFromItem(item, `metadata_filters["${key}"]`)]),
    );
  }
  if (request.serviceFilters.length > 0) {
    filter.services = request.serviceFilters.map((service, i) =>
      serviceFromEnum(service, `service_filters[${i}]`),
    );
  }
  return filter;
}

/** The hub's own node first, as NanoPing lists it. */
function hubOrder(nodes: readonly NodeRecord[]): NodeRecord[] {
  return [...nodes.filter((n) => n.role === "controller"), ...nodes.filter((n) => n.role !== "controller")];
}

/** What changed between two versions of a node, in NanoPing's words. */
function nodeUpdate(
  before: NodeRecord | undefined,
  after: NodeRecord,
): StreamNodesUpdateResponse["update"] | undefined {
  const node = nanopingNode(after);
  if (before === undefined) return { case: "authenticatedNode", value: node };
  const wasOnline = before.status === "ready";
  const isOnline = after.status === "ready";
  if (!wasOnline && isOnline) return { case: "connectedNode", value: node };
  if (wasOnline && !isOnline) {
    return after.status === "left"
      ? { case: "deauthenticatedNode", value: node }
      : { case: "disconnectedNode", value: node };
  }
  if (before.name !== after.name) return { case: "updatedNameNode", value: node };
  const keys = new Set([...Object.keys(before.metadata), ...Object.keys(after.metadata)]);
  for (const key of keys) {
    const a = before.metadata[key];
    const b = after.metadata[key];
    if (a === undefined || b === undefined || !metadataEquals(a, b))
      return { case: "updatedMetadataNode", value: node };
  }
  return undefined;
}

/** What NanoPing's hub server touches: the nodes, the join requests, and the feed. */
export interface HubServerServiceDeps {
  readonly registry: NodeRegistry;
  readonly joinRequests: JoinRequestBook;
  readonly feed: EventFeed;
  readonly store: Store;
}

export function hubServerService(
  context: HubServerServiceDeps,
): Partial<ServiceImpl<typeof HubServerService>> {
  const { registry, joinRequests, feed, store } = context;
  return {
    async getNodes(request) {
      const { nodes } = await registry.list(hubNodeFilter(request));
      return { nodes: hubOrder(nodes).map(nanopingNode) };
    },

    async removeNode(request) {
      if (request.nodeId.trim() === "") throw CorralError.invalidArgument("node_id", "is empty");
      const node = await registry.get(request.nodeId);
      if (node.role === "controller")
        throw new CorralError("PERMISSION_DENIED", "the hub's own node cannot be removed");
      await registry.remove(node.id);
      return {};
    },

    async *streamNodes(request, ctx) {
      const filter = hubNodeFilter(request);
      const { nodes, revision } = await registry.list(filter);
      yield { response: { case: "initialResponse", value: { nodes: hubOrder(nodes).map(nanopingNode) } } };
      for await (const event of feed.watch({
        fromRevision: revision + 1,
        kinds: ["node"],
        signal: ctx.signal,
      })) {
        if (event.type === "node.deleted") {
          if (event.node !== undefined && matchesNodeFilter(event.node, { ...filter, statuses: [] })) {
            yield {
              response: {
                case: "updateResponse",
                value: { update: { case: "deauthenticatedNode", value: nanopingNode(event.node) } },
              },
            };
          }
          continue;
        }
        if (event.node === undefined || !matchesNodeFilter(event.node, { ...filter, statuses: [] })) continue;
        const update = nodeUpdate(event.previous, event.node);
        if (update !== undefined) yield { response: { case: "updateResponse", value: { update } } };
      }
    },

    /**
     * Pending requests go out (those already waiting first, so a request filed before anyone listened
     * is not lost); answers come in. Several operators may listen: each request is decided once, and a
     * late answer to a decided request is ignored.
     */
    async *authenticationByRequests(answers, ctx) {
      const decidedBy = describePrincipal(principalOf(ctx));
      const answering = (async () => {
        for await (const answer of answers) {
          await joinRequests
            .answer(Number(answer.requestId), answer.accept, decidedBy)
            .catch((error: unknown) => {
              if (
                !(error instanceof CorralError) ||
                !["FAILED_PRECONDITION", "NOT_FOUND"].includes(error.code)
              )
                throw error;
            });
        }
      })();
      answering.catch(() => undefined);
      const sent = new Set<number>();
      const from = (await store.revision()) + 1;
      for (const record of await joinRequests.list({ includeDecided: false })) {
        sent.add(record.id);
        yield { node: requestingNode(record), requestId: BigInt(record.id) };
      }
      for await (const event of feed.watch({
        fromRevision: from,
        kinds: ["join-request"],
        signal: ctx.signal,
      })) {
        const record = event.request;
        if (record === undefined || record.state !== "pending" || sent.has(record.id)) continue;
        sent.add(record.id);
        yield { node: requestingNode(record), requestId: BigInt(record.id) };
      }
    },
  };
}
