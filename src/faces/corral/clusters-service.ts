import type { MessageInitShape } from "@bufbuild/protobuf";
import { timestampFromMs } from "@bufbuild/protobuf/wkt";
import type { HandlerContext, ServiceImpl } from "@connectrpc/connect";
import { CorralError } from "../../base/errors.ts";
import type { ClusterChange, ClusterEngine, ClusterView } from "../../core/clusters/cluster-engine.ts";
import type { ClusterRole, ClusterState, MemberState } from "../../core/clusters/cluster-record.ts";
import {
  ClusterEventKind,
  ClusterRole as ClusterRoleMessage,
  type ClusterSchema,
  ClusterState as ClusterStateMessage,
  type ClustersService,
  MemberState as MemberStateMessage,
} from "../../gen/corral/v1/clusters_pb.ts";
import { principalOf } from "../../rpc/principal-context.ts";
import { describePrincipal } from "../../security/principal.ts";

const roleToWire: Readonly<Record<ClusterRole, ClusterRoleMessage>> = {
  server: ClusterRoleMessage.SERVER,
  agent: ClusterRoleMessage.AGENT,
};

const stateToWire: Readonly<Record<ClusterState, ClusterStateMessage>> = {
  new: ClusterStateMessage.NEW,
  provisioning: ClusterStateMessage.PROVISIONING,
  ready: ClusterStateMessage.READY,
  failed: ClusterStateMessage.FAILED,
  deprovisioning: ClusterStateMessage.DEPROVISIONING,
  deprovisioned: ClusterStateMessage.DEPROVISIONED,
};

const memberStateToWire: Readonly<Record<MemberState, MemberStateMessage>> = {
  pending: MemberStateMessage.PENDING,
  provisioning: MemberStateMessage.PROVISIONING,
  provisioned: MemberStateMessage.PROVISIONED,
  failed: MemberStateMessage.FAILED,
  "rolled-back": MemberStateMessage.ROLLED_BACK,
  deprovisioning: MemberStateMessage.DEPROVISIONING,
  deprovisioned: MemberStateMessage.DEPROVISIONED,
};

const eventKindToWire: Readonly<Record<ClusterChange["kind"], ClusterEventKind>> = {
  snapshot: ClusterEventKind.SNAPSHOT,
  synced: ClusterEventKind.SYNCED,
  put: ClusterEventKind.PUT,
  deleted: ClusterEventKind.DELETED,
};

export function clusterToMessage(view: ClusterView): MessageInitShape<typeof ClusterSchema> {
  const r = view.record;
  return {
    name: r.name,
    state: stateToWire[r.state],
    message: r.message,
    plans: { ...r.plans },
    parameters: { ...r.parameters },
    serverUrl: r.serverUrl,
    agentConcurrency: r.agentConcurrency,
    members: view.members.map((m) => ({
      nodeId: m.nodeId,
      nodeName: m.nodeName,
      role: roleToWire[m.role],
      state: memberStateToWire[m.state],
      message: m.message,
      nodeStatus: m.nodeStatus,
      health: m.health,
      lastJobId: m.lastJobId,
      attempts: m.attempts,
    })),
    jobs: r.jobs.map((j) => ({ ...j })),
    hasJoinToken: view.hasJoinToken,
    healthyMembers: view.healthyMembers,
    createdAt: timestampFromMs(r.createdAt),
    updatedAt: timestampFromMs(r.updatedAt),
  };
}

function roleFromWire(role: ClusterRoleMessage): ClusterRole {
  if (role === ClusterRoleMessage.SERVER) return "server";
  if (role === ClusterRoleMessage.AGENT || role === ClusterRoleMessage.UNSPECIFIED) return "agent";
  throw CorralError.invalidArgument("role", `${role} is not a cluster role (SERVER or AGENT)`);
}

function nameOf(name: string): string {
  if (name === "") throw CorralError.invalidArgument("name", "is empty; name a cluster");
  return name;
}

const by = (ctx: HandlerContext) => describePrincipal(principalOf(ctx));

/** What the clusters face touches: the cluster engine alone. */
export interface ClustersServiceDeps {
  readonly clusters: ClusterEngine;
}

/** corral.v1.ClustersService: clusters of nodes with a k3s lifecycle (`corral cluster …`). */
export function clustersService({
  clusters,
}: ClustersServiceDeps): Partial<ServiceImpl<typeof ClustersService>> {
  return {
    async createCluster(request) {
      const view = await clusters.create({
        name: request.name,
        server: request.server,
        agents: request.agents,
        plans: request.plans ?? {},
        parameters: request.parameters,
        serverUrl: request.serverUrl,
        agentConcurrency: request.agentConcurrency,
      });
      return { cluster: clusterToMessage(view) };
    },

    async listClusters() {
      return { clusters: (await clusters.list()).map(clusterToMessage) };
    },

    async getCluster(request) {
      return { cluster: clusterToMessage(await clusters.get(nameOf(request.name))) };
    },

    async *watchClusters(request, ctx) {
      for await (const change of clusters.watch({ name: request.name, signal: ctx.signal })) {
        yield {
          kind: eventKindToWire[change.kind],
          revision: BigInt(change.revision),
          cluster:
            change.view === undefined
              ? change.name === ""
                ? undefined
                : { name: change.name }
              : clusterToMessage(change.view),
        };
      }
    },

    async addClusterNodes(request) {
      const view = await clusters.addNodes(nameOf(request.name), request.nodes, roleFromWire(request.role));
      return { cluster: clusterToMessage(view) };
    },

    async removeClusterNodes(request, ctx) {
      return {
        cluster: clusterToMessage(await clusters.removeNodes(nameOf(request.name), request.nodes, by(ctx))),
      };
    },

    async provisionCluster(request, ctx) {
      return { cluster: clusterToMessage(await clusters.provision(nameOf(request.name), by(ctx))) };
    },

    async deprovisionCluster(request, ctx) {
      return { cluster: clusterToMessage(await clusters.deprovision(nameOf(request.name), by(ctx))) };
    },

    async deleteCluster(request) {
      await clusters.delete(nameOf(request.name), request.force);
      return {};
    },
  };
}
