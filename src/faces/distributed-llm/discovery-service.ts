import type { HandlerContext, ServiceImpl } from "@connectrpc/connect";
import { CorralError } from "../../base/errors.ts";
import type { TokenRegistry } from "../../core/admission/tokens.ts";
import { clusterTotals } from "../../core/metrics/cluster-metrics.ts";
import type { ModelRegistry } from "../../core/models/model-registry.ts";
import type { NodeRecord, Resources } from "../../core/nodes/node.ts";
import type { NodeLoads } from "../../core/nodes/node-load.ts";
import type { NodeRegistry } from "../../core/nodes/node-registry.ts";
import { validateNodeId, validateNodeName, validateResources } from "../../core/nodes/node-validation.ts";
import { defaults } from "../../defaults.ts";
import type { DiscoveryService, ResourceInfo } from "../../gen/node_pb.ts";
import { principalOf } from "../../rpc/principal-context.ts";
import type { ClusterFacts, Heartbeats } from "../face-context.ts";
import { clusterMetrics, isMember, memoryInUse, modelInfo, nodeInfo, resourcePredicate } from "./messages.ts";
import { describeLayerMoves } from "./placement-text.ts";

/** What Distributed LLM's DiscoveryService touches: registration (nodes, tokens), models, heartbeats, loads. */
export interface DiscoveryServiceDeps {
  readonly registry: NodeRegistry;
  readonly facts: ClusterFacts;
  readonly models: ModelRegistry;
  readonly heartbeats: Heartbeats;
  readonly loads: NodeLoads;
  readonly tokens: TokenRegistry;
}

export function distributedLlmDiscoveryService(
  context: DiscoveryServiceDeps,
): Partial<ServiceImpl<typeof DiscoveryService>> {
  const { registry, facts, models, heartbeats } = context;
  return {
    async discoverNodes(request) {
      const accepts = resourcePredicate(request.filter, "filter");
      const known = new Set(request.knownNodes.map((id) => id.trim()));
      const { nodes } = await registry.list();
      const discovered = nodes
        .filter(isMember)
        .filter((node) => !known.has(node.id) && !known.has(node.name))
        .filter((node) => node.id !== request.requesterId && node.name !== request.requesterId)
        .filter(accepts)
        .map(nodeInfo);
      return {
        discoveredNodes: discovered,
        success: true,
        message: `${discovered.length} node(s) discovered`,
      };
    },

    /**
     * Joins a node with its resources; it is `ready` at once. The loopback bridge (whose callers act as
     * admin) and operators may register any node; a node may register itself again (which refreshes its
     * address and resources and counts as a heartbeat); anyone else needs a join token in the call
     * metadata `corral-join-token` (`corral token create`), and may only add a node whose name is free.
     */
    async registerWithCluster(request, ctx) {
      const name = validateNodeName(request.nodeId.trim() === "" ? "" : request.nodeId, "node_id");
      const resources = resourcesFromInfo(request.resources);
      const existing = await registry.get(name).catch((error: unknown) => {
        if (error instanceof CorralError && error.code === "NOT_FOUND") return undefined;
        throw error;
      });
      const current = existing !== undefined && isMember(existing) ? existing : undefined;
      if (current?.role === "controller" || name === facts.controllerName) {
        throw CorralError.invalidArgument(
          "node_id",
          `"${name}" is the controller's own node; it comes from the controller's config`,
        );
      }
      await admit(ctx, name, current, context);

      let node: NodeRecord;
      if (current === undefined) {
        node = await registry.register({
          ...(await callersId(context, name, existing)),
          name,
          role: "agent",
          address: request.address,
          port: request.port,
          resources,
          status: "ready",
        });
      } else {
        // What the call leaves out (no address, no resources) stays as it was.
        node = await registry.update(current.id, (stored) => ({
          ...(request.address.trim() === "" ? {} : { address: request.address, port: request.port }),
          ...(request.resources === undefined
            ? {}
            : // used_layers belongs to placement: a node re-registering cannot reset it.
              // ResourceInfo has no disks: the ones the agent reported stay.
              {
                resources: {
                  ...resources,
                  usedLayers: stored.resources.usedLayers,
                  disks: stored.resources.disks,
                },
              }),
        }));
        if (node.status !== "pending") await heartbeats.heartbeat(node.id);
        node = await registry.get(node.id);
      }
      const { nodes } = await registry.list();
      const everySeconds = Math.max(1, Math.round(heartbeats.nextInterval() / 1000));
      const seeds =
        request.seedNodes.length > 0 ? "; seed_nodes are not needed: the controller is the seed" : "";
      return {
        success: true,
        message:
          `${current === undefined ? "registered" : "refreshed"} ${node.name} (${node.status}, ${node.resources.maxLayers} layers); ` +
          `register again about every ${everySeconds}s to stay ready${seeds}`,
        existingNodes: nodes.filter((n) => isMember(n) && n.id !== node.id).map(nodeInfo),
        clusterId: facts.clusterId,
      };
    },

    /**
     * Graceful leave: the node's model layers move to other nodes first (it is drained), then it is
     * marked `left`. A node may make only itself leave; the controller leaves when it is shut down.
     */
    async leaveCluster(request, ctx) {
      if (request.nodeId.trim() === "")
        throw CorralError.invalidArgument("node_id", "is empty; give a node id or name");
      if (request.reason.length > 256)
        throw CorralError.invalidArgument("reason", "is longer than 256 characters");
      const node = await registry.get(request.nodeId.trim());
      const principal = principalOf(ctx);
      if (principal.kind === "node" && principal.nodeId !== node.id) {
        throw new CorralError(
          "PERMISSION_DENIED",
          `node ${principal.nodeId} may only make itself leave, not ${node.name}`,
        );
      }
      if (node.role === "controller") {
        throw new CorralError(
          "FAILED_PRECONDITION",
          `${node.name} is the controller; it leaves when it is shut down`,
        );
      }
      if (node.status === "left")
        return { success: true, message: `${node.name} had already left the cluster` };
      const { outcome } = await models.drain(node.id);
      await registry.setStatus(node.id, "left");
      await models.undrain(node.id);
      const reason = request.reason.trim() === "" ? "" : ` (${request.reason.trim()})`;
      return {
        success: true,
        message: `${node.name} left the cluster${reason}; ${describeLayerMoves(outcome, node.id)}`,
      };
    },

    async getClusterInfo() {
      const [{ nodes }, { models: list }] = await Promise.all([registry.list(), models.list()]);
      const members = nodes.filter(isMember);
      return {
        clusterId: facts.clusterId,
        nodes: members.map(nodeInfo),
        models: list.map(modelInfo),
        metrics: clusterMetrics(clusterTotals(members, memoryInUse(context.loads))),
      };
    },
  };
}

/**
 * The id a node registered here gets: the `node_id` the caller chose, when it can be an id (no whitespace)
 * and no other node holds it, so that NodeInfo.node_id reads back what was sent and stays so after a
 * rename; a fresh UUID otherwise. A node that left under that id gives it up to the new registration.
 */
async function callersId(
  { registry }: DiscoveryServiceDeps,
  name: string,
  existing: NodeRecord | undefined,
): Promise<{ id?: string }> {
  try {
    validateNodeId(name, "node_id");
  } catch {
    return {};
  }
  const holder =
    existing?.id === name
      ? existing
      : await registry.get(name).then(
          (node) => (node.id === name ? node : undefined),
          () => undefined,
        );
  if (holder === undefined) return { id: name };
  if (isMember(holder)) return {};
  await registry.remove(holder.id);
  return { id: name };
}

/** Who may register `name`; a stranger's join token is spent only once everything else checked out. */
async function admit(
  ctx: HandlerContext,
  name: string,
  current: NodeRecord | undefined,
  { tokens }: DiscoveryServiceDeps,
): Promise<void> {
  const principal = principalOf(ctx);
  if (principal.kind === "local" || principal.kind === "controller") return;
  if (principal.kind === "operator" && principal.role !== "viewer") return;
  if (principal.kind === "node") {
    if (current !== undefined && current.id === principal.nodeId) return;
    throw new CorralError(
      "PERMISSION_DENIED",
      `node ${principal.nodeId} may only register itself, not ${name}`,
    );
  }
  const token = ctx.requestHeader.get(defaults.distributedLlm.joinTokenHeader)?.trim() ?? "";
  if (token === "") {
    throw new CorralError(
      "UNAUTHENTICATED",
      `RegisterWithCluster needs a join token in the call metadata "${defaults.distributedLlm.joinTokenHeader}" ` +
        "(corral token create), an operator's credentials, or the controller's loopback address",
    );
  }
  if (current !== undefined) {
    throw new CorralError(
      "ALREADY_EXISTS",
      `a node named "${name}" is already a member; a join token adds new nodes only`,
      {
        details: { node: name },
      },
    );
  }
  await tokens.redeem(token, "node");
}

/** ResourceInfo as the core checks it (negative or absurd figures are INVALID_ARGUMENT). */
function resourcesFromInfo(info: ResourceInfo | undefined): Partial<Resources> {
  if (info === undefined) return {};
  const number = (value: bigint, field: string) => {
    if (value < 0n || value > BigInt(Number.MAX_SAFE_INTEGER))
      throw CorralError.invalidArgument(
        `resources.${field}`,
        `must be 0 to ${Number.MAX_SAFE_INTEGER}, got ${value}`,
      );
    return Number(value);
  };
  return validateResources(
    {
      cpuCores: number(info.cpuCores, "cpu_cores"),
      memoryMb: number(info.memoryMb, "memory_mb"),
      gpus: info.gpus.map((gpu, i) => ({
        name: gpu.name,
        memoryMb: number(gpu.memoryMb, `gpus[${i}].memory_mb`),
        uuid: gpu.uuid,
      })),
      maxLayers: info.maxLayers,
      usedLayers: info.usedLayers,
    },
    "resources",
  );
}
