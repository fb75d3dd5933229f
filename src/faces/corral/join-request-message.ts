import { create } from "@bufbuild/protobuf";
import { timestampFromMs } from "@bufbuild/protobuf/wkt";
import type { JoinRequestRecord } from "../../core/admission/join-request.ts";
import { JoinRequestState, type PendingJoin, PendingJoinSchema } from "../../gen/corral/v1/join_pb.ts";
import { metadataToMessage } from "../../wire/corral-node.ts";

const stateToEnum: Record<JoinRequestRecord["state"], JoinRequestState> = {
  pending: JoinRequestState.PENDING,
  accepted: JoinRequestState.ACCEPTED,
  rejected: JoinRequestState.REJECTED,
  expired: JoinRequestState.EXPIRED,
};

export function pendingJoinMessage(record: JoinRequestRecord): PendingJoin {
  return create(PendingJoinSchema, {
    id: BigInt(record.id),
    nodeId: record.nodeId,
    name: record.name,
    metadata: Object.fromEntries(Object.entries(record.metadata).map(([k, v]) => [k, metadataToMessage(v)])),
    address: record.address,
    sourceAddress: record.sourceAddress,
    keyFingerprint: record.keyFingerprint,
    state: stateToEnum[record.state],
    createdAt: timestampFromMs(record.createdAt),
    expiresAt: timestampFromMs(record.expiresAt),
    decidedBy: record.decidedBy ?? "",
    reason: record.reason ?? "",
  });
}
