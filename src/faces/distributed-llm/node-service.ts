import type { ServiceImpl } from "@connectrpc/connect";
import { CorralError } from "../../core/errors.ts";
import type { NodeService } from "../../gen/node_pb.ts";
import type { FaceContext } from "../face-context.ts";
import { isMember, nodeInfo } from "./messages.ts";

export function distributedLlmNodeService({
  registry,
}: FaceContext): Partial<ServiceImpl<typeof NodeService>> {
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
  };
}
