import type { StoreEvent } from "../store/types.ts";
import { decodeJoinRequest, type JoinRequestRecord, joinRequestPrefix } from "./join-request.ts";
import type { NodeRecord } from "./node.ts";
import { decodeStoredNode } from "./node-codec.ts";
import { nodeKeyPrefix } from "./node-keys.ts";

/** A node was written (`node` is the new record, `previous` the one it replaced) or deleted (`node` as it was). */
export interface NodeEvent {
  kind: "node";
  type: "node.put" | "node.deleted";
  revision: number;
  key: string;
  node?: NodeRecord;
  previous?: NodeRecord;
}

/** A join request was created or changed state (`request` is the record after the change). */
export interface JoinRequestEvent {
  kind: "join-request";
  type: "join-request.put" | "join-request.deleted";
  revision: number;
  key: string;
  request?: JoinRequestRecord;
}

/** One union member per kind of cluster state; a new kind adds a member here and a decoder below. */
export type ClusterEvent = NodeEvent | JoinRequestEvent;
export type ClusterEventKind = ClusterEvent["kind"];

/** Turns the store events under one key prefix into cluster events of one kind. */
export interface EventDecoder {
  kind: ClusterEventKind;
  prefix: string;
  decode(event: StoreEvent): ClusterEvent;
}

export const nodeEventDecoder: EventDecoder = {
  kind: "node",
  prefix: nodeKeyPrefix,
  decode(event) {
    const base = { kind: "node" as const, revision: event.revision, key: event.key };
    const previous = event.prevValue === undefined ? undefined : decodeStoredNode(event.prevValue, event.key);
    if (event.type === "delete")
      return previous === undefined
        ? { ...base, type: "node.deleted" }
        : { ...base, type: "node.deleted", node: previous };
    const put: NodeEvent = { ...base, type: "node.put" };
    if (event.value !== undefined) put.node = decodeStoredNode(event.value, event.key);
    if (previous !== undefined) put.previous = previous;
    return put;
  },
};

export const joinRequestEventDecoder: EventDecoder = {
  kind: "join-request",
  prefix: joinRequestPrefix,
  decode(event) {
    const base = { kind: "join-request" as const, revision: event.revision, key: event.key };
    if (event.type === "delete") {
      return event.prevValue === undefined
        ? { ...base, type: "join-request.deleted" }
        : { ...base, type: "join-request.deleted", request: decodeJoinRequest(event.prevValue) };
    }
    return event.value === undefined
      ? { ...base, type: "join-request.put" }
      : { ...base, type: "join-request.put", request: decodeJoinRequest(event.value) };
  },
};

export const clusterEventDecoders: readonly EventDecoder[] = [nodeEventDecoder, joinRequestEventDecoder];

/** The cluster event for a store event, or undefined for keys no decoder owns (indexes, other tables). */
export function decodeClusterEvent(
  event: StoreEvent,
  decoders: readonly EventDecoder[] = clusterEventDecoders,
): ClusterEvent | undefined {
  return decoders.find((decoder) => event.key.startsWith(decoder.prefix))?.decode(event);
}
