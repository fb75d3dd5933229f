import type { StoreEvent } from "../../store/types.ts";

/**
 * Where the ownership directory lives in the store. Only what cannot be derived is stored: the keys the
 * directory knows (with their claims), and each member's draining state and weight. Who owns an
 * unclaimed key follows from the members by hashing, so a membership change writes nothing per key.
 *
 *   /ownership/keys/<key, URI-encoded>       {"claim"?: node id, "claimedAt"?, "confirmedTo"?, "confirmedAt"?}
 *   /ownership/members/<node id, URI-encoded> {"drain"?: {"reason", "since"}, "weight"?}
 */
export const ownershipPrefix = "/ownership/";
export const ownershipKeyPrefix = "/ownership/keys/";
export const ownershipMemberPrefix = "/ownership/members/";

export type DrainReason = "closing" | "operator";

export interface DrainState {
  readonly reason: DrainReason;
  /** Milliseconds since the epoch. */
  readonly since: number;
}

export interface StoredKeyEntry {
  /** Node id of the member holding an explicit claim. */
  readonly claim?: string;
  readonly claimedAt?: number;
  /** The last accepted ConfirmOwner: to which member, when. */
  readonly confirmedTo?: string;
  readonly confirmedAt?: number;
}

export interface StoredMemberState {
  readonly drain?: DrainState;
  /** Set through the API; absent: the node's label, else 1. */
  readonly weight?: number;
}

export function ownershipKeyOf(key: string): string {
  return ownershipKeyPrefix + encodeURIComponent(key);
}

export function ownershipMemberKeyOf(nodeId: string): string {
  return ownershipMemberPrefix + encodeURIComponent(nodeId);
}

function decodeTail(storeKey: string, prefix: string): string {
  try {
    return decodeURIComponent(storeKey.slice(prefix.length));
  } catch {
    return storeKey.slice(prefix.length);
  }
}

export function keyFromStoreKey(storeKey: string): string {
  return decodeTail(storeKey, ownershipKeyPrefix);
}

export function nodeIdFromMemberKey(storeKey: string): string {
  return decodeTail(storeKey, ownershipMemberPrefix);
}

function parseObject(value: string): Record<string, unknown> {
  try {
    const parsed: unknown = JSON.parse(value);
    return typeof parsed === "object" && parsed !== null && !Array.isArray(parsed)
      ? (parsed as Record<string, unknown>)
      : {};
  } catch {
    return {};
  }
}

const finite = (value: unknown): value is number => typeof value === "number" && Number.isFinite(value);

/** Lenient: a malformed entry reads as an unclaimed key rather than stopping the directory. */
export function decodeKeyEntry(value: string): StoredKeyEntry {
  const o = parseObject(value);
  return {
    ...(typeof o.claim === "string" && o.claim !== "" ? { claim: o.claim } : {}),
    ...(finite(o.claimedAt) ? { claimedAt: o.claimedAt } : {}),
    ...(typeof o.confirmedTo === "string" ? { confirmedTo: o.confirmedTo } : {}),
    ...(finite(o.confirmedAt) ? { confirmedAt: o.confirmedAt } : {}),
  };
}

export function encodeKeyEntry(entry: StoredKeyEntry): string {
  return JSON.stringify(entry);
}

export function decodeMemberState(value: string): StoredMemberState {
  const o = parseObject(value);
  const drain =
    typeof o.drain === "object" && o.drain !== null ? (o.drain as Record<string, unknown>) : undefined;
  const reason = drain?.reason === "closing" || drain?.reason === "operator" ? drain.reason : undefined;
  return {
    ...(reason === undefined ? {} : { drain: { reason, since: finite(drain?.since) ? drain.since : 0 } }),
    ...(finite(o.weight) && o.weight > 0 ? { weight: o.weight } : {}),
  };
}

export function encodeMemberState(state: StoredMemberState): string {
  return JSON.stringify(state);
}

/**
 * A change to the ownership directory's stored state. Key events carry the directory key (decoded) and
 * the entry before and after; member events the node id and its state before and after. An accepted
 * ConfirmOwner, a claim, a release, a drain and a weight change are each one of these.
 */
export interface OwnershipEvent {
  kind: "ownership";
  type: "ownership.key.put" | "ownership.key.deleted" | "ownership.member.put" | "ownership.member.deleted";
  revision: number;
  /** The store key. */
  key: string;
  /** Key events: the directory key (a cart id, an actor id …). */
  ownershipKey?: string;
  entry?: StoredKeyEntry;
  previousEntry?: StoredKeyEntry;
  /** Member events: the member's node id. */
  nodeId?: string;
  state?: StoredMemberState;
  previousState?: StoredMemberState;
}

export function decodeOwnershipEvent(event: StoreEvent): OwnershipEvent {
  const base = { kind: "ownership" as const, revision: event.revision, key: event.key };
  if (event.key.startsWith(ownershipMemberPrefix)) {
    const out: OwnershipEvent = {
      ...base,
      type: event.type === "delete" ? "ownership.member.deleted" : "ownership.member.put",
      nodeId: nodeIdFromMemberKey(event.key),
    };
    if (event.value !== undefined && event.type === "put") out.state = decodeMemberState(event.value);
    if (event.prevValue !== undefined) out.previousState = decodeMemberState(event.prevValue);
    return out;
  }
  const out: OwnershipEvent = {
    ...base,
    type: event.type === "delete" ? "ownership.key.deleted" : "ownership.key.put",
    ownershipKey: keyFromStoreKey(event.key),
  };
  if (event.value !== undefined && event.type === "put") out.entry = decodeKeyEntry(event.value);
  if (event.prevValue !== undefined) out.previousEntry = decodeKeyEntry(event.prevValue);
  return out;
}
