import { NodeStatus } from "../../gen/corral/v1/nodes_pb.ts";
import { statusText } from "../live/cluster-store.ts";

export function StatusBadge({ status }: { status: NodeStatus }) {
  const text = statusText[status] ?? "unknown";
  return <span className={`badge status-${text}`}>{text}</span>;
}

export const allStatuses = [
  NodeStatus.READY,
  NodeStatus.SUSPECT,
  NodeStatus.DOWN,
  NodeStatus.PENDING,
  NodeStatus.LEFT,
] as const;
