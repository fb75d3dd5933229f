import type { StoreEvent } from "../../store/types.ts";
import {
  decodeStoredModel,
  drainKeyPrefix,
  type ModelRecord,
  modelKeyPrefix,
  nodeIdOfDrainKey,
} from "./model.ts";

/** A model was written (`model` is the new record, `previous` the one it replaced) or deleted (`model` as it was). */
export interface ModelEvent {
  kind: "model";
  type: "model.put" | "model.deleted";
  revision: number;
  key: string;
  model?: ModelRecord;
  previous?: ModelRecord;
}

/** A node was drained (its layers moved off, it takes none) or undrained. */
export interface NodeDrainEvent {
  kind: "node-drain";
  type: "node-drain.put" | "node-drain.deleted";
  revision: number;
  key: string;
  nodeId: string;
}

export { drainKeyPrefix, modelKeyPrefix };

export function decodeModelEvent(event: StoreEvent): ModelEvent {
  const base = { kind: "model" as const, revision: event.revision, key: event.key };
  const previous = event.prevValue === undefined ? undefined : decodeStoredModel(event.prevValue, event.key);
  if (event.type === "delete")
    return previous === undefined
      ? { ...base, type: "model.deleted" }
      : { ...base, type: "model.deleted", model: previous };
  const put: ModelEvent = { ...base, type: "model.put" };
  if (event.value !== undefined) put.model = decodeStoredModel(event.value, event.key);
  if (previous !== undefined) put.previous = previous;
  return put;
}

export function decodeNodeDrainEvent(event: StoreEvent): NodeDrainEvent {
  return {
    kind: "node-drain",
    type: event.type === "delete" ? "node-drain.deleted" : "node-drain.put",
    revision: event.revision,
    key: event.key,
    nodeId: nodeIdOfDrainKey(event.key),
  };
}
