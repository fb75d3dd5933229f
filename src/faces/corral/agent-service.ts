import { durationFromMs } from "@bufbuild/protobuf/wkt";
import type { HandlerContext, ServiceImpl } from "@connectrpc/connect";
import type { Clock } from "../../base/clock.ts";
import { parseDuration } from "../../base/duration.ts";
import { CorralError } from "../../base/errors.ts";
import { untilAborted } from "../../base/until-aborted.ts";
import type { EventFeed } from "../../core/events/event-feed.ts";
import type { ModelRegistry } from "../../core/models/model-registry.ts";
import type { NodeLoads } from "../../core/nodes/node-load.ts";
import type { NodePatch } from "../../core/nodes/node-record.ts";
import type { NodeRegistry } from "../../core/nodes/node-registry.ts";
import { defaults } from "../../defaults.ts";
import type { AgentService, HeartbeatRequest } from "../../gen/corral/v1/agent_pb.ts";
import { principalOf, recheckPrincipal } from "../../rpc/principal-context.ts";
import type { Store } from "../../store/store.ts";
import {
  metadataMapFromMessage,
  nodeToMessage,
  resourcesFromMessage,
  servicesFromMessage,
} from "../../wire/corral-node.ts";
import type { ClusterFacts, Heartbeats, PeerFeed } from "../face-context.ts";
import { watchAccess } from "./access-watch.ts";

const updatableFields = new Set([
  "name",
  "metadata",
  "resources",
  "services",
  "address",
  "labels",
  "version",
]);

/** The node a call is about is always the caller's own: the certificate says which. */
function callingNode(ctx: HandlerContext): string {
  const principal = principalOf(ctx);
  if (principal.kind !== "node") {
    throw new CorralError(
      "PERMISSION_DENIED",
      "this method is for nodes, about themselves; operators use NodesService",
    );
  }
  return principal.nodeId;
}

const neverStopping = new AbortController().signal;

/** What the agent face touches: heartbeats and loads, the node records, layer assignments, access watches. */
export interface AgentServiceDeps {
  readonly registry: NodeRegistry;
  readonly heartbeats: Heartbeats;
  readonly loads: NodeLoads;
  readonly clock: Clock;
  readonly models: ModelRegistry;
  readonly facts: ClusterFacts;
  readonly peers?: PeerFeed;
  readonly stopping?: AbortSignal;
  readonly store: Store;
  readonly feed: EventFeed;
}

export function agentService(context: AgentServiceDeps): Partial<ServiceImpl<typeof AgentService>> {
  const { registry, heartbeats, loads, clock, models, facts, peers, stopping = neverStopping } = context;
  const beat = async (nodeId: string, request: HeartbeatRequest) => {
    const nextIn = await heartbeats.heartbeat(nodeId);
    // The load figures stay in memory (Distributed LLM's GetMetrics reads them); never a store write.
    const load = { cpuUsage: request.cpuUsage, memoryUsedMb: Number(request.memoryUsedMb), at: clock.now() };
    loads.record(nodeId, load);
    peers?.load(nodeId, load);
    return { nextIn: durationFromMs(nextIn), controllers: [...(facts.controllerAddresses?.() ?? [])] };
  };
  const maxAgeMs = parseDuration(defaults.heartbeatStream.maxAge);
  return {
    heartbeat(request, ctx) {
      return beat(callingNode(ctx), request);
    },

    async *heartbeatStream(requests, ctx) {
      const nodeId = callingNode(ctx);
      const endsAt = clock.now() + maxAgeMs;
      const held = heartbeats.openStream?.(nodeId);
      try {
        // Ends with the client's side, when this controller stops, or when the connection drops.
        for await (const request of untilAborted(requests, AbortSignal.any([stopping, ctx.signal]))) {
          // The stream outlives the check made when it opened: a heartbeat is refused exactly when the
          // same heartbeat as a call would be.
          const principal = await recheckPrincipal(ctx);
          if (principal.kind !== "node" || principal.nodeId !== nodeId)
            throw new CorralError("UNAUTHENTICATED", "the stream's credentials no longer name this node");
          yield await beat(nodeId, request);
          if (clock.now() >= endsAt) return;
        }
      } finally {
        // The end of the stream is a signal: without a goodbye (the call cancelled under us — the agent's
        // process or connection is gone) the node is suspect now, not after missed heartbeats.
        held?.end(!ctx.signal.aborted || stopping.aborted);
      }
    },

    watchAccess(_request, ctx) {
      return watchAccess(context, ctx, stopping);
    },

    async updateSelf(request, ctx) {
      const nodeId = callingNode(ctx);
      if (request.fields.length === 0)
        throw CorralError.invalidArgument("fields", "is empty; name the fields to change");
      const patch: NodePatch = {};
      for (const field of request.fields) {
        if (!updatableFields.has(field)) {
          throw CorralError.invalidArgument(
            "fields",
            `"${field}" cannot be updated; use ${[...updatableFields].join(", ")}`,
          );
        }
      }
      const has = (field: string) => request.fields.includes(field);
      if (has("name")) patch.name = request.name;
      if (has("metadata")) patch.metadata = metadataMapFromMessage(request.metadata, "metadata");
      if (has("resources")) patch.resources = resourcesFromMessage(request.resources);
      if (has("services")) patch.services = servicesFromMessage(request.services, "services");
      if (has("address")) patch.address = request.address;
      if (has("labels")) patch.labels = request.labels;
      if (has("version")) patch.version = request.version;
      return { node: nodeToMessage(await registry.update(nodeId, patch)) };
    },

    /** Graceful: the node's model layers move to other nodes first, then it is marked left. */
    async leave(_request, ctx) {
      const nodeId = callingNode(ctx);
      await models.drain(nodeId);
      await registry.setStatus(nodeId, "left");
      await models.undrain(nodeId);
      return {};
    },
  };
}
