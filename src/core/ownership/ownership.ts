import { formatHostPort } from "../../base/address.ts";
import { parseDuration } from "../../base/duration.ts";
import { CorralError, ErrorCode } from "../../base/errors.ts";
import { defaults } from "../../defaults.ts";
import type { NodeRecord } from "../nodes/node.ts";
import type { DirectoryMember, MemberView, OwnershipDirectory } from "./ownership-directory.ts";
import type { DrainReason, StoredKeyEntry, StoredMemberState } from "./ownership-keys.ts";

/**
 * The rules of the ownership directory, without time or I/O: who is a member, which keys and callers are
 * acceptable, what a ConfirmOwner writes. The engine that keeps the directory in step with the store
 * (engines/ownership-follower.ts) applies them.
 */

export interface OwnershipLimits {
  readonly maxKeyBytes: number;
  readonly maxKeys: number;
  readonly maxKeysPerCall: number;
  readonly weightLabel: string;
  readonly maxWeight: number;
  readonly maxAliases: number;
  readonly catchUpMs: number;
}

/** A claim as watchers see it. */
export interface ClaimView {
  readonly key: string;
  readonly nodeId: string;
  /** The holder's host now ("" when it is no longer a member). */
  readonly host: string;
}

/** One item of a membership watch: the listing first (snapshot …, synced), then changes. */
export type DirectoryChange =
  | { readonly type: "snapshot"; readonly revision: number; readonly member: MemberView }
  | { readonly type: "snapshot-claim"; readonly revision: number; readonly claim: ClaimView }
  | { readonly type: "synced"; readonly revision: number }
  | { readonly type: "put" | "deleted"; readonly revision: number; readonly member: MemberView }
  | { readonly type: "claimed" | "released"; readonly revision: number; readonly claim: ClaimView };

export interface Ack {
  readonly accepted: boolean;
  readonly message: string;
}

/** Who asks, as far as ownership cares: the member the caller speaks for, when it is one. */
export interface Caller {
  /** The caller's own node (a node certificate, or the controller's node for the loopback bridge). */
  readonly nodeId?: string;
  /** True when the caller is a node acting for itself (claims and drains only of itself). */
  readonly isNode?: boolean;
}

const statusesThatAreMembers = new Set(["ready", "suspect", "down"]);

/** A node is a member while it has an address and has not left (pending nodes are not members yet). */
export function memberOfNode(
  node: NodeRecord,
  state: StoredMemberState | undefined,
  limits: Pick<OwnershipLimits, "weightLabel" | "maxWeight"> = defaultOwnershipLimits(),
): DirectoryMember | undefined {
  if (!statusesThatAreMembers.has(node.status) || node.address === "" || node.port === 0) return undefined;
  const label = Number(node.labels[limits.weightLabel]);
  const labelWeight = Number.isFinite(label) && label > 0 && label <= limits.maxWeight ? label : undefined;
  return {
    id: node.id,
    name: node.name,
    host: formatHostPort({ host: node.address, port: node.port }),
    status: node.status,
    weight: state?.weight ?? labelWeight ?? 1,
    ...(state?.drain === undefined ? {} : { draining: state.drain }),
  };
}

export function defaultOwnershipLimits(): OwnershipLimits {
  const d = defaults.ownership;
  return {
    maxKeyBytes: d.maxKeyBytes,
    maxKeys: d.maxKeys,
    maxKeysPerCall: d.maxKeysPerCall,
    weightLabel: d.weightLabel,
    maxWeight: d.maxWeight,
    maxAliases: d.maxAliases,
    catchUpMs: parseDuration(d.catchUp),
  };
}

/** Whether two views of a member differ in anything a watcher is told about. */
export function sameMember(a: DirectoryMember | undefined, b: DirectoryMember | undefined): boolean {
  if (a === undefined || b === undefined) return a === b;
  return (
    a.host === b.host &&
    a.name === b.name &&
    a.status === b.status &&
    a.weight === b.weight &&
    a.draining?.reason === b.draining?.reason
  );
}

// ------------------------------------------------------------------ checks

/** Why a key cannot be stored, or undefined when it can. */
export function keyProblem(key: string, limits: Pick<OwnershipLimits, "maxKeyBytes">): string | undefined {
  const bytes = Buffer.byteLength(key, "utf8");
  if (bytes > limits.maxKeyBytes) return `is ${bytes} bytes; the limit is ${limits.maxKeyBytes}`;
  if (/[\uD800-\uDFFF]/u.test(key) || key.includes("\u0000")) return "holds a lone surrogate or NUL";
  return undefined;
}

export function checkKey(key: string, limits: Pick<OwnershipLimits, "maxKeyBytes">, field = "key"): string {
  if (typeof key !== "string" || key === "") throw CorralError.invalidArgument(field, "is empty");
  const problem = keyProblem(key, limits);
  if (problem !== undefined) throw CorralError.invalidArgument(field, problem);
  return key;
}

export function checkRoom(
  directory: OwnershipDirectory,
  adding: number,
  limits: Pick<OwnershipLimits, "maxKeys">,
) {
  if (adding > 0 && directory.size + adding > limits.maxKeys) {
    throw new CorralError(
      ErrorCode.ResourceExhausted,
      `the directory knows ${directory.size} keys; ${adding} more would pass the limit of ${limits.maxKeys}`,
    );
  }
}

export function checkEligible(member: DirectoryMember, what: string): void {
  if (member.status !== "ready")
    throw new CorralError(
      ErrorCode.FailedPrecondition,
      `${describe(member)} is ${member.status}; it cannot ${what}`,
    );
  if (member.draining !== undefined)
    throw new CorralError(ErrorCode.FailedPrecondition, `${describe(member)} is draining; it cannot ${what}`);
}

// ------------------------------------------------------------------ decisions

/**
 * go-cart-actor's ConfirmOwner, decided: accepted when `target` already owns the key, or is its
 * rendezvous owner (the key goes back to hashing), or the caller is the key's current owner handing it
 * over (a claim for `target`). Answers the entry to write, or why not.
 */
export function decideConfirm(
  directory: OwnershipDirectory,
  key: string,
  target: DirectoryMember,
  caller: Caller,
  now: number,
): { change: (entry: StoredKeyEntry | undefined) => StoredKeyEntry; message: string } | { refused: string } {
  const current = directory.owner(key).owner;
  const hrw = directory.rendezvousOwner(key);
  const confirmed = { confirmedTo: target.id, confirmedAt: now };
  if (current?.id === target.id)
    return {
      change: (entry) => ({ ...(entry ?? {}), ...confirmed }),
      message: `${key} already belongs to ${describe(target)}`,
    };
  if (hrw?.id === target.id)
    return {
      change: () => confirmed,
      message: `${key} now belongs to ${describe(target)}, its rendezvous owner${current === undefined ? "" : ` (was ${describe(current)})`}`,
    };
  if (current !== undefined && caller.nodeId === current.id)
    return {
      change: () => ({ claim: target.id, claimedAt: now, ...confirmed }),
      message: `${key} handed over by its owner ${describe(current)} to ${describe(target)}`,
    };
  const owner = current === undefined ? "no member" : describe(current);
  const rendezvousOwner = hrw === undefined ? "none" : describe(hrw);
  return {
    refused:
      `${key} belongs to ${owner}; only its owner may hand it to ${describe(target)} ` +
      `(its rendezvous owner is ${rendezvousOwner})`,
  };
}

/** A member's state after a drain starts or ends; "same" when nothing is to be written. */
export function drainedState(
  current: StoredMemberState,
  draining: boolean,
  reason: DrainReason,
  now: number,
): StoredMemberState | "same" {
  if (!draining) return current.drain === undefined ? "same" : withoutDrain(current);
  // An operator's drain is not turned into (or undone like) a closing one.
  if (current.drain !== undefined && (current.drain.reason === "operator" || reason === "closing"))
    return "same";
  return { ...current, drain: { reason, since: now } };
}

/** The answer to Closing once the host's drain is written. */
export function closingMessage(
  member: DirectoryMember,
  moved: number,
  directory: OwnershipDirectory,
): string {
  const left = directory.keyCountOf(member.id);
  const eligible = directory.eligibleMembers().length;
  return (
    `${describe(member)} is draining: ${moved} key${moved === 1 ? "" : "s"} moved` +
    (eligible === 0 && directory.size > 0 ? "; no member is left to own keys" : "") +
    (left > 0 ? `; ${left} still with it` : "")
  );
}

// ------------------------------------------------------------------ small helpers

export function withoutClaim(entry: StoredKeyEntry | undefined): StoredKeyEntry {
  const { claim: _claim, claimedAt: _at, ...rest } = entry ?? {};
  return rest;
}

export function withoutDrain(state: StoredMemberState): StoredMemberState {
  const { drain: _drain, ...rest } = state;
  return rest;
}

export function reject(message: string): Ack {
  return { accepted: false, message };
}

export function describe(member: DirectoryMember): string {
  return member.name === "" || member.name === member.host ? member.host : `${member.host} (${member.name})`;
}

/** Keys whose owner differs between two snapshots of the owners. */
export function countMoved(
  before: Map<string, string | undefined>,
  after: Map<string, string | undefined>,
): number {
  let moved = 0;
  for (const [key, owner] of before) if (after.has(key) && after.get(key) !== owner) moved++;
  return moved;
}
