import { CorralError } from "../../base/errors.ts";
import { udpTargetResolver } from "../../faces/corral/pipeline-udp-targets.ts";
import { NodesService } from "../../gen/corral/v1/nodes_pb.ts";
import { PipelineRunsService } from "../../gen/corral/v1/pipelines_pb.ts";
import type { UdpBlockRef } from "../../pipelines/manager.ts";
import { fromConnectError } from "../../rpc/connect-errors.ts";
import type { ControllerLink } from "../controller-link.ts";

/**
 * Resolves a udp_sender's `{node, pipeline, block}` through the controller: the node's address from
 * NodesService, the receiving block's port from that node's PipelineRunsService (relayed by the
 * controller to the node).
 */
export function controllerUdpResolver(
  link: ControllerLink,
): (target: UdpBlockRef, signal: AbortSignal) => Promise<{ host: string; port: number }> {
  const resolve = udpTargetResolver({
    node: async (which, signal) => {
      const { node } = await link.client(NodesService).getNode({ node: which }, { signal });
      if (node === undefined) throw CorralError.notFound("node", which);
      return node;
    },
    pipelines: async (nodeId, signal) =>
      (await link.client(PipelineRunsService).listPipelines({ nodeId }, { signal })).pipelines,
  });
  return async (target, signal) => {
    try {
      return await resolve(target, signal);
    } catch (error) {
      throw error instanceof CorralError ? error : fromConnectError(error);
    }
  };
}
