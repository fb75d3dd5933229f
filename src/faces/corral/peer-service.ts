import type { ServiceImpl } from "@connectrpc/connect";
import { CorralError } from "../../core/errors.ts";
import type { ControllerPeerService } from "../../gen/corral/v1/peers_pb.ts";
import { principalOf } from "../../rpc/principal-context.ts";
import type { FaceContext } from "../face-context.ts";
import { sampleFromMessage } from "./metrics-service.ts";

/** Samples one Replicate may carry (senders keep theirs to `ha.replicateMaxSamples`). */
const maxReplicatedSamples = 50_000;
/** Load figures one Replicate may carry: one per node. */
const maxReplicatedLoads = 100_000;

/**
 * corral.v1.ControllerPeerService: another controller of this cluster passes on what its agents told
 * it. Applied as if heard here, except that nothing is passed on again (every controller sends what it
 * heard itself to every other).
 */
export function peerService({
  metrics,
  loads,
}: FaceContext): Partial<ServiceImpl<typeof ControllerPeerService>> {
  return {
    async replicate(request, ctx) {
      if (principalOf(ctx).kind !== "controller")
        throw new CorralError("PERMISSION_DENIED", "only the cluster's controllers replicate to each other");
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
      // Every sample is checked before any is kept: a bad batch changes nothing.
      const kept = metrics.history.recordMany(batches);
      for (const load of request.loads) {
        // The newest figure wins, whichever controller heard it.
        if ((loads.latest(load.nodeId)?.at ?? Number.NEGATIVE_INFINITY) >= load.atUnixMs) continue;
        loads.record(load.nodeId, {
          cpuUsage: load.cpuUsage,
          memoryUsedMb: load.memoryUsedMb,
          at: load.atUnixMs,
        });
      }
      return { samplesKept: kept };
    },
  };
}
