import type { ServiceImpl } from "@connectrpc/connect";
import { CorralError } from "../../base/errors.ts";
import type { NodeRegistry } from "../../core/nodes/node-registry.ts";
import { ConnectionState, type HubClientService } from "../../gen/hub_client_pb.ts";
import { nanopingNode } from "../../wire/nanoping-node.ts";
import type { ClusterFacts } from "../face-context.ts";

/** What the controller's own hub client touches: its own node record. */
export interface HubClientServiceDeps {
  readonly registry: NodeRegistry;
  readonly facts: ClusterFacts;
}

/**
 * The hub client API as served by the controller itself: the controller's node is always signed in to
 * its own hub, and its name and metadata come from its YAML file, never from the API.
 */
export function controllerHubClientService({
  registry,
  facts,
}: HubClientServiceDeps): Partial<ServiceImpl<typeof HubClientService>> {
  return {
    getLocalNodeId() {
      return { nodeId: facts.controllerNodeId, isAuthenticated: true };
    },

    async getNode(request) {
      const id = request.nodeId.trim() === "" ? facts.controllerNodeId : request.nodeId;
      return { node: nanopingNode(await registry.get(id)) };
    },

    async setNode(request) {
      const target = request.nodeId.trim() === "" ? facts.controllerNodeId : request.nodeId;
      const node = await registry.get(target);
      if (node.id === facts.controllerNodeId) {
        throw new CorralError(
          "PERMISSION_DENIED",
          "the controller's node information comes from its YAML config file (node.name) and cannot be set through the API",
        );
      }
      throw new CorralError(
        "PERMISSION_DENIED",
        `node ${node.name} sets its own information through its own agent`,
      );
    },

    authenticateByRequest() {
      throw new CorralError("ALREADY_EXISTS", "Client is already authenticated");
    },

    disconnect() {
      throw new CorralError(
        "FAILED_PRECONDITION",
        "the controller is the hub; it cannot disconnect from itself",
      );
    },

    async *streamConnectionState(_request, ctx) {
      yield { state: ConnectionState.CONNECTED };
      await new Promise<void>((resolve) =>
        ctx.signal.addEventListener("abort", () => resolve(), { once: true }),
      );
    },
  };
}
