import { asObject } from "../json-fields.ts";
import type { MetadataValue, NodeService, Resources } from "../nodes/node.ts";
import { metadataValueFromJson, metadataValueToJson } from "../nodes/node-codec.ts";

export const joinRequestStates = ["pending", "accepted", "rejected", "expired"] as const;
export type JoinRequestState = (typeof joinRequestStates)[number];

/** A node asking to join, waiting for an operator; kept in the store so every controller and tool sees it. */
export interface JoinRequestRecord {
  /** Small and increasing: NanoPing's `request_id` is a uint64. */
  id: number;
  nodeId: string;
  name: string;
  metadata: Record<string, MetadataValue>;
  address: string;
  sourceAddress: string;
  keyFingerprint: string;
  csrPem: string;
  resources: Resources;
  services: NodeService[];
  labels: Record<string, string>;
  version: string;
  state: JoinRequestState;
  createdAt: number;
  expiresAt: number;
  decidedAt?: number;
  decidedBy?: string;
  reason?: string;
}

export const joinRequestPrefix = "/join-requests/";
export const joinRequestSequenceKey = "/join-request-sequence";

/** Zero-padded so that keys sort in id order. */
export function joinRequestKey(id: number): string {
  return `${joinRequestPrefix}${String(id).padStart(12, "0")}`;
}

export function encodeJoinRequest(record: JoinRequestRecord): string {
  return JSON.stringify({
    ...record,
    metadata: Object.fromEntries(
      Object.entries(record.metadata).map(([k, v]) => [k, metadataValueToJson(v)]),
    ),
  });
}

export function decodeJoinRequest(text: string): JoinRequestRecord {
  const json = asObject(JSON.parse(text), "join request");
  const metadata = asObject(json.metadata ?? {}, "join request.metadata");
  return {
    ...(json as unknown as JoinRequestRecord),
    metadata: Object.fromEntries(
      Object.entries(metadata).map(([k, v]) => [k, metadataValueFromJson(v, `join request.metadata.${k}`)]),
    ),
  };
}
