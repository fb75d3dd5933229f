import type { ServiceImpl } from "@connectrpc/connect";
import type { Clock } from "../../base/clock.ts";
import { CorralError } from "../../base/errors.ts";
import type { MetricsHistory } from "../../core/metrics/metrics-history.ts";
import type { NodeLoads } from "../../core/nodes/node-load.ts";
import type { NodeRegistry } from "../../core/nodes/node-registry.ts";
import type { ControllerPeerService } from "../../gen/corral/v1/peers_pb.ts";
import { principalOf } from "../../rpc/principal-context.ts";
import type { ClusterFacts } from "../face-context.ts";
import { sampleFromMessage } from "./metrics-service.ts";

/** Samples one Replicate may carry (senders keep theirs to `ha.replicateMaxSamples`). */
const maxReplicatedSamples = 50_000;
/** Load figures one Replicate may carry: one per node. */
const maxReplicatedLoads = 100_000;

/** What the peer face touches: where heard samples and loads go, and who may pass them on. */
export interface PeerServiceDeps {
  readonly metrics: { readonly history: MetricsHistory; readonly intervalMs: number };
  readonly loads: NodeLoads;
  readonly registry: NodeRegistry;
  readonly clock: Clock;
  readonly facts: ClusterFacts;
}

/**
 * corral.v1.ControllerPeerService: another controller of this cluster passes on what its agents told
 * it. Applied as if heard here, except that nothing is passed on again (every controller sends what it
 * heard itself to every other).
 */
export function peerService({
  metrics,
  loads,
  registry,
  clock,
  facts,
}: PeerServiceDeps): Partial<ServiceImpl<typeof ControllerPeerService>> {
  return {
    async replicate(request, ctx) {
      const principal = principalOf(ctx);
      if (principal.kind !== "controller")
        throw new CorralError("PERMISSION_DENIED", "only the cluster's controllers replicate to each other");
      if (principal.controllerId === facts.controllerNodeId)
        throw new CorralError(
          "FAILED_PRECONDITION",
          "this controller called itself: the address it advertises leads back to it; set http.advertiseAddress",
        );
      if (request.from === "")
        throw CorralError.invalidArgument("from", "is empty; name the sending controller");
      const sampleCount = request.samples.reduce((sum, batch) => sum + batch.samples.length, 0);
      if (sampleCount > maxReplicatedSamples)
        throw CorralError.invalidArgument("samples", `has more than ${maxReplicatedSamples} samples`);
      if (request.loads.length > maxReplicatedLoads)
        throw CorralError.invalidArgument("loads", `has more than ${maxReplicatedLoads} entries`);
      const batches = request.samples.map((batch, i) => {
        if (batch.nodeId === "") throw CorralError.invalidArgument(`samples[${i}].node_id`, "is empty");
        return { nodeId: batch.nodeId, points: batch.samples.map(sampleFromMessage) };
      });
      for (const [i, load] of request.loads.entries()) {
        if (load.nodeId === "") throw CorralError.invalidArgument(`loads[${i}].node_id`, "is empty");
        if (![load.cpuUsage, load.memoryUsedMb, load.atUnixMs].every(Number.isFinite))
          throw CorralError.invalidArgument(`loads[${i}]`, "has a figure that is not a finite number");
      }
      // Only members: a peer's batch may name a node removed meanwhile, and nothing from the network
      // may make this controller keep a ring for a node that does not exist.
      const members = new Set(
        (await registry.list()).nodes.filter((node) => node.status !== "left").map((node) => node.id),
      );
      // Every sample is checked before any is kept: a bad batch changes nothing.
      const kept = metrics.history.recordMany(batches.filter((batch) => members.has(batch.nodeId)));
      const now = clock.now();
      for (const load of request.loads) {
        if (!members.has(load.nodeId)) continue;
        // The newest figure wins, whichever controller heard it; a peer's clock ahead of ours cannot
        // make a figure newer than now.
        const at = Math.min(load.atUnixMs, now);
        if ((loads.latest(load.nodeId)?.at ?? Number.NEGATIVE_INFINITY) >= at) continue;
        loads.record(load.nodeId, { cpuUsage: load.cpuUsage, memoryUsedMb: load.memoryUsedMb, at });
      }
      return { samplesKept: kept };
    },
  };
}
