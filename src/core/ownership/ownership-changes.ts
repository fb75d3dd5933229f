import type { NodeEvent } from "../events/cluster-event.ts";
import type { NodeRecord } from "../nodes/node.ts";
import {
  type ClaimView,
  type DirectoryChange,
  memberOfNode,
  type OwnershipLimits,
  sameMember,
} from "./ownership.ts";
import type { OwnershipDirectory } from "./ownership-directory.ts";
import type { OwnershipEvent, StoredMemberState } from "./ownership-keys.ts";

/** What a watcher's changes are computed from: the directory, and the nodes and states behind it. */
export interface KnownMembers {
  readonly directory: OwnershipDirectory;
  readonly nodes: ReadonlyMap<string, NodeRecord>;
  /** Nodes removed lately, so that a resumed watch can still describe changes made before the removal. */
  readonly removed: ReadonlyMap<string, { readonly node: NodeRecord; readonly revision: number }>;
  readonly states: ReadonlyMap<string, StoredMemberState>;
  readonly limits: Pick<OwnershipLimits, "weightLabel" | "maxWeight">;
}

export function claimView(directory: OwnershipDirectory, key: string, nodeId: string): ClaimView {
  return { key, nodeId, host: directory.member(nodeId)?.host ?? "" };
}

/** A node event as a membership watcher sees it: a member put or deleted, or nothing it shows. */
export function nodeChange(known: KnownMembers, event: NodeEvent): DirectoryChange | undefined {
  const id = event.node?.id;
  if (id === undefined) return undefined;
  const state = known.states.get(id);
  const before = event.type === "node.deleted" ? event.node : event.previous;
  const was = before === undefined ? undefined : memberOfNode(before, state, known.limits);
  const is =
    event.type === "node.put" && event.node !== undefined
      ? memberOfNode(event.node, state, known.limits)
      : undefined;
  if (is !== undefined) {
    if (sameMember(was, is)) return undefined;
    return { type: "put", revision: event.revision, member: known.directory.view(is) };
  }
  if (was === undefined) return undefined;
  return { type: "deleted", revision: event.revision, member: known.directory.view(was) };
}

/** An ownership event as a watcher sees it: a member's drain or weight changed, a claim made or released. */
export function ownershipChange(
  known: KnownMembers,
  event: OwnershipEvent,
  includeClaims: boolean,
): DirectoryChange | undefined {
  if (event.nodeId !== undefined) {
    const removed = known.removed.get(event.nodeId);
    const node =
      known.nodes.get(event.nodeId) ??
      (removed !== undefined && event.revision < removed.revision ? removed.node : undefined);
    if (node === undefined) return undefined;
    const was = memberOfNode(node, event.previousState, known.limits);
    const is = memberOfNode(node, event.state, known.limits);
    if (is === undefined || sameMember(was, is)) return undefined;
    return { type: "put", revision: event.revision, member: known.directory.view(is) };
  }
  if (!includeClaims || event.ownershipKey === undefined) return undefined;
  const claim = event.entry?.claim;
  const previous = event.previousEntry?.claim;
  if (claim !== undefined && claim !== previous)
    return {
      type: "claimed",
      revision: event.revision,
      claim: claimView(known.directory, event.ownershipKey, claim),
    };
  if (previous !== undefined && claim === undefined)
    return {
      type: "released",
      revision: event.revision,
      claim: claimView(known.directory, event.ownershipKey, previous),
    };
  return undefined;
}
