import type { JoinRequestRecord } from "../../core/admission/join-request.ts";
import type { NodeRecord } from "../../core/nodes/node.ts";
import { emptyResources } from "../../core/nodes/node.ts";
import { nanopingNode } from "../../wire/nanoping-node.ts";

/** A pending join request as NanoPing shows it: the would-be node, offline. */
export function requestingNode(record: JoinRequestRecord) {
  const node: NodeRecord = {
    id: record.nodeId,
    name: record.name,
    role: "agent",
    address: record.address,
    port: 0,
    metadata: record.metadata,
    services: record.services,
    resources: emptyResources(),
    labels: record.labels,
    status: "pending",
    createdAt: record.createdAt,
    updatedAt: record.createdAt,
    lastSeenAt: record.createdAt,
    version: record.version,
  };
  return nanopingNode(node);
}
