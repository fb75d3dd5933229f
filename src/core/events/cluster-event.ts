import type { StoreEvent } from "../../store/types.ts";
import { decodeJoinRequest, type JoinRequestRecord, joinRequestPrefix } from "../admission/join-request.ts";
import {
  decodeModelEvent,
  decodeNodeDrainEvent,
  drainKeyPrefix,
  type ModelEvent,
  modelKeyPrefix,
  type NodeDrainEvent,
} from "../models/model-events.ts";
import type { NodeRecord } from "../nodes/node.ts";
import { decodeStoredNode } from "../nodes/node-codec.ts";
import { decodeNodeHealthEvent, type NodeHealthEvent, nodeHealthPrefix } from "../nodes/node-health.ts";
import { nodeKeyPrefix } from "../nodes/node-keys.ts";
import { decodeOwnershipEvent, type OwnershipEvent, ownershipPrefix } from "../ownership/ownership-keys.ts";
import {
  decodeProvisioningEvent,
  type ProvisioningEvent,
  provisioningPrefix,
} from "../provisioning/provisioning-job.ts";

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
export type ClusterEvent =
  | NodeEvent
  | JoinRequestEvent
  | OwnershipEvent
  | ModelEvent
  | NodeDrainEvent
  | ProvisioningEvent
  | NodeHealthEvent;
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

/** The ownership directory's keys (claims) and member states (draining, weight): see ownership-keys.ts. */
export const ownershipEventDecoder: EventDecoder = {
  kind: "ownership",
  prefix: ownershipPrefix,
  decode: decodeOwnershipEvent,
};

/** Models and their placement (see model-events.ts). */
export const modelEventDecoder: EventDecoder = {
  kind: "model",
  prefix: modelKeyPrefix,
  decode: decodeModelEvent,
};

/** Nodes drained of model layers. */
export const nodeDrainEventDecoder: EventDecoder = {
  kind: "node-drain",
  prefix: drainKeyPrefix,
  decode: decodeNodeDrainEvent,
};

/** Provisioning jobs and each node's steps (see provisioning-job.ts). */
export const provisioningEventDecoder: EventDecoder = {
  kind: "provisioning",
  prefix: provisioningPrefix,
  decode: decodeProvisioningEvent,
};

export const nodeHealthEventDecoder: EventDecoder = {
  kind: "node-health",
  prefix: nodeHealthPrefix,
  decode: decodeNodeHealthEvent,
};

export const clusterEventDecoders: readonly EventDecoder[] = [
  nodeEventDecoder,
  joinRequestEventDecoder,
  ownershipEventDecoder,
  modelEventDecoder,
  nodeDrainEventDecoder,
  provisioningEventDecoder,
  nodeHealthEventDecoder,
];

/** The cluster event for a store event, or undefined for keys no decoder owns (indexes, other tables). */
export function decodeClusterEvent(
  event: StoreEvent,
  decoders: readonly EventDecoder[] = clusterEventDecoders,
): ClusterEvent | undefined {
  return decoders.find((decoder) => event.key.startsWith(decoder.prefix))?.decode(event);
}
