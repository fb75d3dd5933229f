import type { ServiceImpl } from "@connectrpc/connect";
import { CorralError } from "../../base/errors.ts";
import type { NodeRecord, NodeService } from "../../core/nodes/node.ts";
import { emptyResources } from "../../core/nodes/node.ts";
import { validateMetadata, validateNodeName } from "../../core/nodes/node-validation.ts";
import { ConnectionState, HubClientService } from "../../gen/hub_client_pb.ts";
import { fromConnectError } from "../../rpc/connect-errors.ts";
import { metadataFromItem, nanopingNode } from "../../wire/nanoping-node.ts";
import type { ControllerLink } from "../controller-link.ts";
import type { IdentityStore } from "../identity-store.ts";

export interface HubClientDeps {
  readonly link: ControllerLink;
  readonly store: IdentityStore;
  readonly services: () => NodeService[];
}

const stateEnum = {
  UNAUTHENTICATED: ConnectionState.UNAUTHENTICATED,
  DISCONNECTED: ConnectionState.DISCONNECTED,
  CONNECTED: ConnectionState.CONNECTED,
} as const;

/** NanoPing's hub client API on the agent's local (loopback) API: the node signs itself in to its hub. */
export function agentHubClientService({
  link,
  store,
  services,
}: HubClientDeps): Partial<ServiceImpl<typeof HubClientService>> {
  const localNode = (): NodeRecord => {
    const now = Date.now();
    return {
      id: link.identity.nodeId,
      name: link.identity.name,
      role: "agent",
      address: "",
      port: 0,
      metadata: link.identity.metadata,
      services: services(),
      resources: emptyResources(),
      labels: {},
      status: link.state.value === "CONNECTED" ? "ready" : "pending",
      createdAt: now,
      updatedAt: now,
      lastSeenAt: now,
      version: "",
    };
  };
  const isSelf = (nodeId: string) => nodeId.trim() === "" || nodeId === link.identity.nodeId;

  return {
    getLocalNodeId() {
      return { nodeId: link.identity.nodeId, isAuthenticated: link.authenticated };
    },

    /**
     * Another node is asked of the controller's own HubClientService/getNode, which builds the answer
     * from the registry with the same builder as getNodes: the same node reads the same whichever way.
     */
    async getNode(request, ctx) {
      if (isSelf(request.nodeId)) return { node: nanopingNode(localNode()) };
      const response = await link
        .client(HubClientService)
        .getNode({ nodeId: request.nodeId }, { signal: ctx.signal })
        .catch((error: unknown) => {
          throw fromConnectError(error);
        });
      if (response.node === undefined) throw CorralError.notFound("node", request.nodeId);
      return { node: response.node };
    },

    /** Replaces the node's name and all of its metadata; a node sets only its own information. */
    async setNode(request) {
      if (!isSelf(request.nodeId)) {
        throw new CorralError(
          "PERMISSION_DENIED",
          `a node sets only its own information; this node is ${link.identity.nodeId}`,
        );
      }
      const name = request.name.trim() === "" ? link.identity.name : validateNodeName(request.name, "name");
      const metadata = validateMetadata(
        Object.fromEntries(
          Object.entries(request.metadata?.items ?? {}).map(([key, item]) => [
            key,
            metadataFromItem(item, `metadata.items["${key}"]`),
          ]),
        ),
        "metadata.items",
      );
      link.identity.name = name;
      link.identity.metadata = metadata;
      await store.save(link.identity);
      await link.pushIdentity();
      return { node: nanopingNode(localNode()) };
    },

    async authenticateByRequest(request, ctx) {
      if (link.authenticated) throw new CorralError("ALREADY_EXISTS", "Client is already authenticated");
      if (request.hubServerAddress.trim() === "") {
        throw CorralError.invalidArgument(
          "hub_server_address",
          "is empty; give the hub's address, e.g. http://127.0.0.1:8769",
        );
      }
      await link.join(request.hubServerAddress, { signal: ctx.signal });
      return {};
    },

    async disconnect() {
      await link.disconnect();
      return {};
    },

    async *streamConnectionState(_request, ctx) {
      for await (const state of link.state.watch(ctx.signal)) yield { state: stateEnum[state] };
    },
  };
}
