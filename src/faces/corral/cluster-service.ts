import { timestampFromMs } from "@bufbuild/protobuf/wkt";
import type { ServiceImpl } from "@connectrpc/connect";
import type { NodeRegistry } from "../../core/nodes/node-registry.ts";
import type { ClusterService } from "../../gen/corral/v1/cluster_pb.ts";
import type { ClusterFacts } from "../face-context.ts";

/** What the cluster face touches: the facts about this controller and the node count. */
export interface ClusterServiceDeps {
  readonly registry: NodeRegistry;
  readonly facts: ClusterFacts;
}

export function clusterService({
  registry,
  facts,
}: ClusterServiceDeps): Partial<ServiceImpl<typeof ClusterService>> {
  return {
    async getClusterStatus() {
      const { nodes, revision } = await registry.list();
      const count = (status: string) => nodes.filter((node) => node.status === status).length;
      const leader = facts.leader?.() ?? (facts.isLeader === undefined ? facts.controllerName : "");
      const controllers = (await facts.controllers?.()) ?? [
        {
          name: facts.controllerName,
          clusterAddress: facts.advertiseAddress,
          version: facts.version,
          startedAt: facts.startedAt,
        },
      ];
      const storeHealth = (await facts.storeHealth?.()) ?? {
        healthy: true,
        message: "",
        revision,
        dbSizeBytes: 0,
      };
      return {
        clusterId: facts.clusterId,
        controllerName: facts.controllerName,
        version: facts.version,
        revision: BigInt(revision),
        nodes: {
          total: nodes.length,
          pending: count("pending"),
          ready: count("ready"),
          suspect: count("suspect"),
          down: count("down"),
          left: count("left"),
        },
        store: facts.storeKind,
        startedAt: timestampFromMs(facts.startedAt),
        isLeader: facts.isLeader?.() ?? true,
        leader,
        controllers: controllers.map((c) => ({
          name: c.name,
          clusterAddress: c.clusterAddress,
          version: c.version,
          startedAt: timestampFromMs(c.startedAt),
          isLeader: c.name === leader,
        })),
        storeHealth: {
          ...storeHealth,
          revision: BigInt(storeHealth.revision),
          dbSizeBytes: BigInt(storeHealth.dbSizeBytes),
        },
      };
    },
  };
}
