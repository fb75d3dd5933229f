import type { ServiceImpl } from "@connectrpc/connect";
import { CorralError } from "../../core/errors.ts";
import type { ControlPlane } from "../../gen/picontroller_pb.ts";
import type { FaceContext } from "../face-context.ts";

export function piControlPlane({
  registry,
  facts,
  clock,
}: FaceContext): Partial<ServiceImpl<typeof ControlPlane>> {
  return {
    async syncClusterState(request) {
      if (request.sinceRevision < 0n)
        throw CorralError.invalidArgument("since_revision", "must not be negative");
      const { nodes, revision } = await registry.list();
      return {
        clusterId: facts.clusterId,
        revision: BigInt(revision),
        leader: facts.controllerName,
        timestamp: BigInt(clock.now()),
        nodes: nodes.map((node) => ({
          nodeId: node.id,
          name: node.name,
          address: node.port === 0 ? node.address : `${node.address}:${node.port}`,
          status: node.status,
          lastSeen: BigInt(node.lastSeenAt),
          labels: node.labels,
          role: node.role,
        })),
      };
    },
  };
}
