import { create } from "@bufbuild/protobuf";
import type { NodeStatus } from "../../core/nodes/node.ts";
import type { MemberView } from "../../core/ownership/ownership-directory.ts";
import { type Member, MemberSchema } from "../../gen/corral/v1/members_pb.ts";
import { NodeStatus as NodeStatusEnum } from "../../gen/corral/v1/nodes_pb.ts";
import type { ClusterFacts } from "../face-context.ts";

const statusToEnum: Record<NodeStatus, NodeStatusEnum> = {
  pending: NodeStatusEnum.PENDING,
  ready: NodeStatusEnum.READY,
  suspect: NodeStatusEnum.SUSPECT,
  down: NodeStatusEnum.DOWN,
  left: NodeStatusEnum.LEFT,
};

export interface MachineLoad {
  readonly cpuUsage: number;
  readonly memoryUsedMb: number;
}

/** A node's latest load, when the controller keeps them (from heartbeats). */
export type LoadOf = (nodeId: string) => MachineLoad | undefined;

/** Where load figures come from: the agents' heartbeats and the controller machine, when kept. */
export interface LoadSources {
  readonly facts: Pick<ClusterFacts, "controllerNodeId">;
  readonly loads?: { latest(nodeId: string): MachineLoad | undefined };
  readonly ownLoad?: () => Promise<MachineLoad>;
}

/**
 * The nodes' load figures as the controller has them: the latest heartbeat of each agent, and (when
 * `withOwn`) the controller machine's own, measured now. Read structurally, so that the directory works
 * the same on a controller that keeps no load figures (then they are 0).
 */
export async function loadsOf(sources: LoadSources, withOwn: boolean): Promise<LoadOf> {
  const latest = typeof sources.loads?.latest === "function" ? sources.loads : undefined;
  let own: MachineLoad | undefined;
  if (withOwn && typeof sources.ownLoad === "function") own = await sources.ownLoad().catch(() => undefined);
  return (nodeId) =>
    nodeId === sources.facts.controllerNodeId && own !== undefined ? own : latest?.latest(nodeId);
}

export function memberToMessage(member: MemberView, load?: MachineLoad): Member {
  return create(MemberSchema, {
    host: member.host,
    nodeId: member.id,
    name: member.name,
    status: statusToEnum[member.status],
    draining: member.draining !== undefined,
    drainReason: member.draining?.reason ?? "",
    weight: member.weight,
    eligible: member.eligible,
    keyCount: BigInt(member.keyCount),
    claimCount: BigInt(member.claimCount),
    load: member.load,
    cpuUsage: load?.cpuUsage ?? 0,
    memoryUsedMb: BigInt(Math.round(load?.memoryUsedMb ?? 0)),
  });
}
