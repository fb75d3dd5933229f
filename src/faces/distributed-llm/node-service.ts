import type { HandlerContext, ServiceImpl } from "@connectrpc/connect";
import { CorralError } from "../../core/errors.ts";
import type { NodeRecord } from "../../core/node.ts";
import type { MetricsStreamResponse, NodeService } from "../../gen/node_pb.ts";
import type { FaceContext } from "../face-context.ts";
import { isMember, nodeInfo, streamIntervalMs, unixSeconds } from "./messages.ts";
import { type LoadSample, requestedMetrics, sampleMetrics } from "./node-metrics.ts";
import { Wakeup } from "./wakeup.ts";

export function distributedLlmNodeService(context: FaceContext): Partial<ServiceImpl<typeof NodeService>> {
  const { registry, feed, clock, loads, facts } = context;

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

  /** The controller measures its own machine; every other node's load comes with its heartbeats. */
  const loadOf = async (node: NodeRecord): Promise<LoadSample | undefined> => {
    if (node.id === facts.controllerNodeId) return { ...(await context.ownLoad()), at: clock.now() };
    return loads.latest(node.id);
  };

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
    async getMetrics(request) {
      const names = requestedMetrics(request.metricNames);
      const node = await member(request.nodeId);
      const now = clock.now();
      const { metrics, unknown } = sampleMetrics(node, await loadOf(node), names, now);
      return { metrics, timestamp: unixSeconds(now), success: unknown.length === 0 };
    },

    /**
     * The node's metrics now, then every `interval_seconds` (default 5, at least 1); the stream ends when
     * the node leaves the cluster or is removed, or when the caller cancels.
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
            const { metrics } = sampleMetrics(current, await loadOf(current), names, now);
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
