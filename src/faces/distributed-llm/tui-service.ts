import { create } from "@bufbuild/protobuf";
import type { ServiceImpl } from "@connectrpc/connect";
import type { Clock } from "../../base/clock.ts";
import { CorralError } from "../../base/errors.ts";
import type { EventFeed } from "../../core/events/event-feed.ts";
import { clusterTotals } from "../../core/metrics/cluster-metrics.ts";
import { nodeStatuses } from "../../core/nodes/node.ts";
import { type ClusterUpdate, ClusterUpdateSchema, type TUIService } from "../../gen/node_pb.ts";
import { type CommandDeps, executeCommand } from "./commands.ts";
import {
  clusterMetrics,
  isMember,
  memoryInUse,
  modelInfo,
  nodeInfo,
  resourcePredicate,
  streamIntervalMs,
  unixSeconds,
} from "./messages.ts";
import { Wakeup } from "./wakeup.ts";

const updateTypes = ["nodes", "models", "metrics"] as const;
type UpdateType = (typeof updateTypes)[number];

/** What Distributed LLM's TUIService touches: what its commands do, plus the feed and the time. */
export interface TuiServiceDeps extends CommandDeps {
  readonly feed: EventFeed;
  readonly clock: Clock;
}

export function distributedLlmTuiService(context: TuiServiceDeps): Partial<ServiceImpl<typeof TUIService>> {
  const { registry, models, feed, clock } = context;

  const update = async (type: UpdateType): Promise<ClusterUpdate> => {
    const timestamp = unixSeconds(clock.now());
    if (type === "models") {
      const { models: list } = await models.list();
      return create(ClusterUpdateSchema, {
        updateType: type,
        timestamp,
        models: list.map(modelInfo),
      });
    }
    const members = (await registry.list()).nodes.filter(isMember);
    return type === "nodes"
      ? create(ClusterUpdateSchema, { updateType: type, timestamp, nodes: members.map(nodeInfo) })
      : create(ClusterUpdateSchema, {
          updateType: type,
          timestamp,
          metrics: clusterMetrics(clusterTotals(members, memoryInUse(context.loads))),
        });
  };

  // Every stream woken by the same change gets the same node list, built once (per change and second:
  // the timestamp and last-seen times are in whole seconds) instead of once per stream.
  let sharedNodes: { key: string; update: Promise<ClusterUpdate> } | undefined;
  const nodesUpdate = (): Promise<ClusterUpdate> => {
    const version = registry.version;
    if (version === undefined) return update("nodes");
    const key = `${version}:${unixSeconds(clock.now())}`;
    if (sharedNodes?.key !== key) {
      const built = { key, update: update("nodes") };
      built.update.catch(() => {
        if (sharedNodes === built) sharedNodes = undefined;
      });
      sharedNodes = built;
    }
    return sharedNodes.update;
  };

  return {
    async getNodeList(request) {
      const filter = request.filter;
      const statuses = new Set(filter?.statuses ?? []);
      for (const status of statuses) {
        if (!(nodeStatuses as readonly string[]).includes(status)) {
          throw CorralError.invalidArgument(
            "filter.statuses",
            `"${status}" is not one of ${nodeStatuses.join(", ")}`,
          );
        }
      }
      const accepts = resourcePredicate(filter?.resources, "filter.resources");
      const nameContains = filter?.nameContains.toLowerCase() ?? "";
      const { nodes } = await registry.list();
      const members = nodes.filter(isMember);
      const listed = members.filter(
        (node) =>
          (statuses.size === 0 || statuses.has(node.status)) &&
          accepts(node) &&
          node.name.toLowerCase().includes(nameContains) &&
          (!filter?.hasGpu || node.resources.gpus.length > 0),
      );
      return {
        nodes: listed.map(nodeInfo),
        ...(request.includeMetrics
          ? { clusterMetrics: clusterMetrics(clusterTotals(members, memoryInUse(context.loads))) }
          : {}),
      };
    },

    /** Every model; with `node_id`, only those with layers on that node. */
    async getModelList(request) {
      const { models: list } = await models.list();
      if (request.nodeId.trim() === "") return { models: list.map(modelInfo) };
      const node = await registry.get(request.nodeId.trim());
      return {
        models: list
          .filter((model) => model.assignments.some((range) => range.nodeId === node.id))
          .map((model) => modelInfo(model)),
      };
    },

    /**
     * One update of each type asked for ("nodes", "models", "metrics"; all three when none) at once, then
     * again every `interval_seconds` (default 5, at least 1), and as soon as the event feed shows a change
     * that concerns a type — a node's record or a model's placement — without waiting for the tick.
     */
    async *streamUpdates(request, ctx) {
      const wanted = new Set<UpdateType>();
      for (const raw of request.updateTypes) {
        const type = raw.trim().toLowerCase();
        if (!(updateTypes as readonly string[]).includes(type)) {
          throw CorralError.invalidArgument(
            "update_types",
            `"${raw}" is not one of ${updateTypes.join(", ")}`,
          );
        }
        wanted.add(type as UpdateType);
      }
      if (wanted.size === 0) for (const type of updateTypes) wanted.add(type);
      const intervalMs = streamIntervalMs(request.intervalSeconds);

      const stop = new AbortController();
      const signal = AbortSignal.any([ctx.signal, stop.signal]);
      const wake = new Wakeup();
      const dirty = new Set<UpdateType>();
      let failure: unknown;
      const following = (async () => {
        for await (const event of feed.watch({ kinds: ["node", "model"], signal })) {
          const before = dirty.size;
          if (event.kind === "node") {
            if (wanted.has("nodes")) dirty.add("nodes");
            if (wanted.has("metrics")) dirty.add("metrics");
          } else if (event.kind === "model" && wanted.has("models")) {
            dirty.add("models");
          }
          if (dirty.size !== before) wake.notify();
        }
      })().catch((error: unknown) => {
        failure = error;
        wake.notify();
      });

      try {
        let nextTick = 0;
        while (!signal.aborted) {
          if (failure !== undefined) throw CorralError.from(failure);
          const due = Date.now() >= nextTick;
          const sending = due ? [...wanted] : updateTypes.filter((type) => dirty.has(type));
          if (due) nextTick = Date.now() + intervalMs;
          for (const type of sending) {
            dirty.delete(type);
            yield await (type === "nodes" ? nodesUpdate() : update(type));
          }
          await wake.wait(Math.max(0, nextTick - Date.now()), signal);
        }
      } finally {
        stop.abort();
        await following;
      }
    },

    async executeCommand(request) {
      return executeCommand(context, request);
    },
  };
}
