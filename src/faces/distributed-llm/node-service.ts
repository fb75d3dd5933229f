import { create } from "@bufbuild/protobuf";
import type { HandlerContext, ServiceImpl } from "@connectrpc/connect";
import type { Clock } from "../../base/clock.ts";
import { parseDuration } from "../../base/duration.ts";
import { CorralError } from "../../base/errors.ts";
import type { EventFeed } from "../../core/events/event-feed.ts";
import type { NodeRecord } from "../../core/nodes/node.ts";
import type { NodeLoads } from "../../core/nodes/node-load.ts";
import type { NodeRegistry } from "../../core/nodes/node-registry.ts";
import { defaults } from "../../defaults.ts";
import type { MetricsStreamResponse, NodeService } from "../../gen/node_pb.ts";
import { EmptySchema, NodeAgent, type SystemMetrics } from "../../gen/picontroller_pb.ts";
import { fromConnectError } from "../../rpc/connect-errors.ts";
import type { AgentReach, ClusterFacts } from "../face-context.ts";
import { isMember, nodeInfo, streamIntervalMs, unixSeconds } from "./messages.ts";
import {
  type NodeReading,
  needsReading,
  readingFromSystemMetrics,
  requestedMetrics,
  sampleMetrics,
} from "./node-metrics.ts";
import { Wakeup } from "./wakeup.ts";

/** What Distributed LLM's NodeService touches: the nodes and their loads, the controller's own node, its agents. */
export interface DistributedLlmNodeServiceDeps {
  readonly registry: NodeRegistry;
  readonly feed: EventFeed;
  readonly clock: Clock;
  readonly loads: NodeLoads;
  readonly facts: ClusterFacts;
  readonly agents: AgentReach;
  readonly localNodeAgent: Partial<ServiceImpl<typeof NodeAgent>>;
  readonly ownLoad: () => Promise<{ cpuUsage: number; memoryUsedMb: number }>;
}

export function distributedLlmNodeService(
  context: DistributedLlmNodeServiceDeps,
): Partial<ServiceImpl<typeof NodeService>> {
  const { registry, feed, clock, loads, facts, agents } = context;

  /** A member named by `node_id` (id or name); a node that left is not found. */
  const member = async (nodeId: string): Promise<NodeRecord> => {
    if (nodeId.trim() === "")
      throw CorralError.invalidArgument("node_id", "is empty; give a node id or name");
    const node = await registry.get(nodeId.trim());
    if (!isMember(node))
      throw new CorralError("NOT_FOUND", `node "${nodeId}" has left the cluster`, {
        details: { node: nodeId },
      });
    return node;
  };

  const readingTimeoutMs = parseDuration(defaults.distributedLlm.readingTimeout);

  /**
   * A reading of the node taken now: the controller's own node by its own NodeAgent, any other by asking
   * its agent's NodeAgent/GetSystemMetrics over mTLS. A node that cannot be asked (it has no agent
   * address, or does not answer within `distributedLlm.readingTimeout`) is answered from its last
   * heartbeat, labelled so, with the reason.
   */
  const readingOf = async (node: NodeRecord, ctx: HandlerContext): Promise<NodeReading | undefined> => {
    let why: string;
    try {
      if (node.id === facts.controllerNodeId) {
        const local = context.localNodeAgent.getSystemMetrics;
        if (local === undefined)
          throw new CorralError("UNIMPLEMENTED", "the controller's node serves no metrics");
        const metrics = (await local.call(context.localNodeAgent, create(EmptySchema), ctx)) as SystemMetrics;
        return readingFromSystemMetrics(metrics, clock.now());
      }
      if (node.port === 0) throw new CorralError("FAILED_PRECONDITION", "it has no agent address to ask");
      const client = await agents.client(NodeAgent, node);
      const metrics = await client.getSystemMetrics({}, { signal: ctx.signal, timeoutMs: readingTimeoutMs });
      return readingFromSystemMetrics(metrics, clock.now());
    } catch (error) {
      if (ctx.signal.aborted) throw error;
      why = `node ${node.name} could not be asked (${fromConnectError(error).message})`;
    }
    const load =
      node.id === facts.controllerNodeId
        ? { ...(await context.ownLoad()), at: clock.now() }
        : loads.latest(node.id);
    return load === undefined ? undefined : { source: "heartbeat", ...load, why };
  };

  const sample = async (node: NodeRecord, names: readonly string[], ctx: HandlerContext, now: number) =>
    sampleMetrics(node, needsReading(names) ? await readingOf(node, ctx) : undefined, names, now);

  return {
    async getNodeInfo(request) {
      if (request.nodeId.trim() === "")
        throw CorralError.invalidArgument("node_id", "is empty; give a node id or name");
      const node = await registry.get(request.nodeId);
      return { node: nodeInfo(node), success: true, message: `node ${node.name} is ${node.status}` };
    },

    async getPeers(request) {
      const { nodes } = await registry.list();
      const requester = request.requesterId.trim();
      const peers = nodes
        .filter(isMember)
        .filter(
          (node) =>
            request.includeSelf || requester === "" || (node.id !== requester && node.name !== requester),
        )
        .map(nodeInfo);
      return { peers, totalCount: peers.length };
    },

    /** `success` is false when a name was not a known metric (each such name carries its `error`). */
    async getMetrics(request, ctx) {
      const names = requestedMetrics(request.metricNames);
      const node = await member(request.nodeId);
      const { metrics, unknown } = await sample(node, names, ctx, clock.now());
      const now = clock.now();
      return { metrics, timestamp: unixSeconds(now), success: unknown.length === 0 };
    },

    /**
     * The node's metrics now, then every `interval_seconds` (default 5, at least 1), each message from a
     * reading taken for it (see readingOf); the stream ends when the node leaves the cluster or is
     * removed, or when the caller cancels.
     */
    async *streamMetrics(request, ctx: HandlerContext) {
      const names = requestedMetrics(request.metricNames);
      const intervalMs = streamIntervalMs(request.intervalSeconds);
      let node = await member(request.nodeId);
      const stop = new AbortController();
      const signal = AbortSignal.any([ctx.signal, stop.signal]);
      const wake = new Wakeup();
      let gone = false;
      const following = (async () => {
        for await (const event of feed.watch({ kinds: ["node"], signal })) {
          const changed = event.node;
          if (changed === undefined || changed.id !== node.id) continue;
          if (event.type === "node.deleted" || !isMember(changed)) gone = true;
          else node = changed;
          wake.notify();
        }
      })().catch(() => {
        // The feed failed under us: end the stream rather than send figures that no longer update.
        gone = true;
        wake.notify();
      });
      try {
        // The node may have left between the lookup and the watch starting.
        if (!isMember(await registry.get(node.id))) return;
        let nextAt = 0;
        while (!signal.aborted && !gone) {
          if (Date.now() >= nextAt) {
            nextAt = Date.now() + intervalMs;
            const now = clock.now();
            const current = await registry.get(node.id).catch(() => undefined);
            if (current === undefined || !isMember(current)) return;
            const { metrics } = await sample(current, names, ctx, now);
            yield { metrics, timestamp: unixSeconds(now) } satisfies Partial<MetricsStreamResponse>;
          }
          // A change of the node wakes the loop early only to check whether it left.
          await wake.wait(Math.max(0, nextAt - Date.now()), signal);
        }
      } finally {
        stop.abort();
        await following;
      }
    },
  };
}
