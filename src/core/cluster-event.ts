import type { StoreEvent } from "../store/types.ts";
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

/** One union member per kind of cluster state; a new kind adds a member here and a decoder below. */
export type ClusterEvent = NodeEvent;
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

export const clusterEventDecoders: readonly EventDecoder[] = [nodeEventDecoder];

/** The cluster event for a store event, or undefined for keys no decoder owns (indexes, other tables). */
export function decodeClusterEvent(
  event: StoreEvent,
  decoders: readonly EventDecoder[] = clusterEventDecoders,
): ClusterEvent | undefined {
  return decoders.find((decoder) => event.key.startsWith(decoder.prefix))?.decode(event);
}
