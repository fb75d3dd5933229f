import type { NodeStatus } from "../nodes/node.ts";
import {
  type Candidate,
  candidate,
  candidates,
  type HashMember,
  hashKey,
  type KeyHash,
  rendezvous,
  scoreOf,
} from "./ownership-hash.ts";
import type { DrainState } from "./ownership-keys.ts";

/** A member of the directory: a node with an address, as the hashing and the APIs see it. */
export interface DirectoryMember extends HashMember {
  /** The node id. */
  readonly id: string;
  readonly name: string;
  /** host:port (go-cart-actor's host). */
  readonly host: string;
  readonly status: NodeStatus;
  readonly draining?: DrainState;
  readonly weight: number;
}

/** A member with what the directory knows of its share. */
export interface MemberView extends DirectoryMember {
  readonly eligible: boolean;
  readonly keyCount: number;
  readonly claimCount: number;
  /** keyCount over its fair share by weight; 0 when it is not eligible or there are no keys. */
  readonly load: number;
}

export type OwnerReason = "claim" | "rendezvous";

export interface OwnerAnswer {
  readonly owner: DirectoryMember | undefined;
  readonly reason: OwnerReason | undefined;
  readonly known: boolean;
  readonly claim: string | undefined;
}

interface KeyState {
  readonly hash: KeyHash;
  claim: string | undefined;
  /** The rendezvous winner among eligible members, and its score. */
  hrw: string | undefined;
  hrwScore: number;
  /** The effective owner: the claim holder while eligible, else `hrw`. */
  owner: string | undefined;
}

/** Ready and not draining (and reachable: it has a host). */
export function isEligible(member: DirectoryMember): boolean {
  return member.status === "ready" && member.draining === undefined && member.host !== "";
}

function compareText(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

/** Where `id` is, or would go, in candidates sorted by member id. */
function sortedIndex(list: readonly Candidate<DirectoryMember>[], id: string): number {
  let low = 0;
  let high = list.length;
  while (low < high) {
    const mid = (low + high) >>> 1;
    if ((list[mid]?.member.id ?? "") < id) low = mid + 1;
    else high = mid;
  }
  return low;
}

function addTo(index: Map<string, Set<string>>, id: string | undefined, key: string): void {
  if (id === undefined) return;
  let set = index.get(id);
  if (set === undefined) {
    set = new Set();
    index.set(id, set);
  }
  set.add(key);
}

function removeFrom(index: Map<string, Set<string>>, id: string | undefined, key: string): void {
  if (id === undefined) return;
  const set = index.get(id);
  if (set === undefined) return;
  set.delete(key);
  if (set.size === 0) index.delete(id);
}

/**
 * The ownership directory in memory, without I/O: members, the keys it knows, their claims, and the
 * owner of every key kept current as members come, go, drain or change weight. Placement is weighted
 * rendezvous hashing over eligible members (`ownership-hash.ts`); a claim overrides it while its holder
 * is eligible.
 *
 * Changes are incremental, so that only keys whose owner changes are touched: when a member stops being
 * eligible only the keys it won are re-placed; when one becomes eligible each key compares one new score
 * with its current winner's. Every change answers how many keys changed owner.
 */
export class OwnershipDirectory {
  readonly #members = new Map<string, DirectoryMember>();
  readonly #byHost = new Map<string, string>();
  readonly #keys = new Map<string, KeyState>();
  /** Effective owner id → keys. */
  readonly #owned = new Map<string, Set<string>>();
  /** Rendezvous winner id → keys. */
  readonly #won = new Map<string, Set<string>>();
  /** Claim holder id → keys (whether or not the holder is eligible now). */
  readonly #claims = new Map<string, Set<string>>();
  #eligible: Candidate<DirectoryMember>[] = [];
  readonly #eligibleIds = new Set<string>();
  /** Eligible members whose weight is not 1 (none: the candidate set is unweighted). */
  #weighted = 0;
  #unowned = 0;

  // ------------------------------------------------------------------ reading

  get size(): number {
    return this.#keys.size;
  }

  /** Known keys that have no owner (no member is eligible). */
  get unownedCount(): number {
    return this.#unowned;
  }

  member(id: string): DirectoryMember | undefined {
    return this.#members.get(id);
  }

  memberByHost(host: string): DirectoryMember | undefined {
    const id = this.#byHost.get(host);
    return id === undefined ? undefined : this.#members.get(id);
  }

  /** By host:port, node id or node name (names only while unambiguous). */
  find(ref: string): DirectoryMember | undefined {
    const byHost = this.memberByHost(ref);
    if (byHost !== undefined) return byHost;
    const byId = this.#members.get(ref);
    if (byId !== undefined) return byId;
    const named = [...this.#members.values()].filter((m) => m.name === ref);
    return named.length === 1 ? named[0] : undefined;
  }

  members(): DirectoryMember[] {
    return [...this.#members.values()].sort((a, b) => compareText(a.host, b.host) || compareText(a.id, b.id));
  }

  eligibleMembers(): DirectoryMember[] {
    return this.#eligible.map((c) => c.member);
  }

  isEligibleId(id: string): boolean {
    return this.#eligibleIds.has(id);
  }

  view(member: DirectoryMember): MemberView {
    const eligible = this.#eligibleIds.has(member.id);
    const keyCount = this.#owned.get(member.id)?.size ?? 0;
    const totalWeight = this.#eligible.reduce((sum, c) => sum + c.weight, 0);
    const owned = this.#keys.size - this.#unowned;
    const fair = eligible && totalWeight > 0 ? (owned * member.weight) / totalWeight : 0;
    return {
      ...member,
      eligible,
      keyCount,
      claimCount: this.#claims.get(member.id)?.size ?? 0,
      load: fair > 0 ? keyCount / fair : 0,
    };
  }

  views(): MemberView[] {
    return this.members().map((m) => this.view(m));
  }

  has(key: string): boolean {
    return this.#keys.has(key);
  }

  claimOf(key: string): string | undefined {
    return this.#keys.get(key)?.claim;
  }

  /** Every claim: key → holder id. */
  claims(): Map<string, string> {
    const out = new Map<string, string>();
    for (const [holder, keys] of this.#claims) for (const key of keys) out.set(key, holder);
    return out;
  }

  /** The owner of any key, known or not (an unknown key is placed by hashing). */
  owner(key: string): OwnerAnswer {
    const state = this.#keys.get(key);
    if (state !== undefined) {
      const owner = state.owner === undefined ? undefined : this.#members.get(state.owner);
      const reason = owner === undefined ? undefined : state.owner === state.claim ? "claim" : "rendezvous";
      return { owner, reason, known: true, claim: state.claim };
    }
    const owner = rendezvous(key, this.#eligible)?.member;
    return { owner, reason: owner === undefined ? undefined : "rendezvous", known: false, claim: undefined };
  }

  /** The rendezvous winner for a key, ignoring claims. */
  rendezvousOwner(key: string): DirectoryMember | undefined {
    const state = this.#keys.get(key);
    if (state !== undefined) return state.hrw === undefined ? undefined : this.#members.get(state.hrw);
    return rendezvous(key, this.#eligible)?.member;
  }

  /** The keys a member owns now, sorted. */
  keysOf(id: string): string[] {
    return [...(this.#owned.get(id) ?? [])].sort(compareText);
  }

  keyCountOf(id: string): number {
    return this.#owned.get(id)?.size ?? 0;
  }

  /** Keys a member holds claims on (eligible or not). */
  claimsOf(id: string): string[] {
    return [...(this.#claims.get(id) ?? [])].sort(compareText);
  }

  /** key → owner id for every known key (for comparisons in tests and benchmarks). */
  owners(): Map<string, string | undefined> {
    const out = new Map<string, string | undefined>();
    for (const [key, state] of this.#keys) out.set(key, state.owner);
    return out;
  }

  // ------------------------------------------------------------------ changing

  /** Adds or changes a member; answers how many keys changed owner. */
  upsertMember(next: DirectoryMember): number {
    const previous = this.#members.get(next.id);
    if (previous !== undefined && this.#byHost.get(previous.host) === previous.id)
      this.#byHost.delete(previous.host);
    this.#members.set(next.id, next);
    if (next.host !== "") this.#byHost.set(next.host, next.id);
    return this.#eligibilityChanged(previous, next);
  }

  /** Removes a member (its claims stay recorded until released); answers how many keys changed owner. */
  removeMember(id: string): number {
    const previous = this.#members.get(id);
    if (previous === undefined) return 0;
    this.#members.delete(id);
    if (this.#byHost.get(previous.host) === id) this.#byHost.delete(previous.host);
    return this.#eligibilityChanged(previous, undefined);
  }

  /**
   * Makes a key known, with its claim (undefined: placed by hashing). Answers the owner before (undefined
   * for a key not known before) and after.
   */
  setKey(key: string, claim: string | undefined): { before: string | undefined; after: string | undefined } {
    let state = this.#keys.get(key);
    const before = state?.owner;
    if (state === undefined) {
      const hash = hashKey(key);
      const winner = rendezvous(hash, this.#eligible);
      state = {
        hash,
        claim: undefined,
        hrw: winner?.member.id,
        hrwScore: winner?.score ?? 0,
        owner: undefined,
      };
      this.#keys.set(key, state);
      addTo(this.#won, state.hrw, key);
      this.#unowned++;
    }
    if (state.claim !== claim) {
      removeFrom(this.#claims, state.claim, key);
      state.claim = claim;
      addTo(this.#claims, claim, key);
    }
    this.#settle(key, state);
    return { before, after: state.owner };
  }

  /** Forgets a key; answers whether it was known. */
  deleteKey(key: string): boolean {
    const state = this.#keys.get(key);
    if (state === undefined) return false;
    removeFrom(this.#claims, state.claim, key);
    removeFrom(this.#won, state.hrw, key);
    removeFrom(this.#owned, state.owner, key);
    if (state.owner === undefined) this.#unowned--;
    this.#keys.delete(key);
    return true;
  }

  // ------------------------------------------------------------------ placement

  #eligibilityChanged(previous: DirectoryMember | undefined, next: DirectoryMember | undefined): number {
    const was = previous !== undefined && this.#eligibleIds.has(previous.id);
    const is = next !== undefined && isEligible(next);
    const id = (next ?? previous)?.id;
    if (id === undefined) return 0;
    if (!was && !is) return 0;
    if (was && is && previous?.weight === next?.weight) return 0;

    if (is) this.#eligibleIds.add(id);
    else this.#eligibleIds.delete(id);
    const wasUnweighted = this.#eligible[0]?.unweighted ?? true;
    if (was && previous !== undefined && previous.weight !== 1) this.#weighted--;
    if (is && next !== undefined && next.weight !== 1) this.#weighted++;
    const unweighted = this.#weighted === 0;
    const scaleChanged = wasUnweighted !== (this.#eligibleIds.size === 0 ? true : unweighted) || (was && is);
    if (scaleChanged) {
      this.#eligible = candidates([...this.#eligibleIds].map((m) => this.#members.get(m) as DirectoryMember));
      return this.#replaceAll();
    }
    // One member in or out of the sorted set, not the set hashed and sorted again: a rack of 10 000
    // nodes going down at once would otherwise cost 10 000 × 10 000 hashes.
    const at = sortedIndex(this.#eligible, id);
    if (is && next !== undefined) this.#eligible.splice(at, 0, candidate(next, unweighted));
    else if (this.#eligible[at]?.member.id === id) this.#eligible.splice(at, 1);
    if (was && !is) return this.#withdraw(id);
    return this.#admit(id);
  }

  /** A member stops being eligible: only the keys it won, and the keys it held by claim, move. */
  #withdraw(id: string): number {
    let moved = 0;
    for (const key of [...(this.#won.get(id) ?? [])]) {
      const state = this.#keys.get(key) as KeyState;
      const winner = rendezvous(state.hash, this.#eligible);
      removeFrom(this.#won, state.hrw, key);
      state.hrw = winner?.member.id;
      state.hrwScore = winner?.score ?? 0;
      addTo(this.#won, state.hrw, key);
      moved += this.#settle(key, state);
    }
    for (const key of [...(this.#claims.get(id) ?? [])])
      moved += this.#settle(key, this.#keys.get(key) as KeyState);
    return moved;
  }

  /** A member becomes eligible: each key compares its score for the newcomer with its current winner's. */
  #admit(id: string): number {
    const newcomer = this.#eligible.find((c) => c.member.id === id);
    if (newcomer === undefined) return 0;
    let moved = 0;
    for (const [key, state] of this.#keys) {
      const s = scoreOf(state.hash, newcomer);
      if (state.hrw === undefined || s > state.hrwScore || (s === state.hrwScore && id < state.hrw)) {
        removeFrom(this.#won, state.hrw, key);
        state.hrw = id;
        state.hrwScore = s;
        addTo(this.#won, id, key);
      }
      moved += this.#settle(key, state);
    }
    return moved;
  }

  /** Weights changed (or the set changed between weighted and not): every key is placed again. */
  #replaceAll(): number {
    let moved = 0;
    this.#won.clear();
    for (const [key, state] of this.#keys) {
      const winner = rendezvous(state.hash, this.#eligible);
      state.hrw = winner?.member.id;
      state.hrwScore = winner?.score ?? 0;
      addTo(this.#won, state.hrw, key);
      moved += this.#settle(key, state);
    }
    return moved;
  }

  /** Recomputes the effective owner; 1 when it changed. */
  #settle(key: string, state: KeyState): number {
    const owner = state.claim !== undefined && this.#eligibleIds.has(state.claim) ? state.claim : state.hrw;
    if (owner === state.owner) return 0;
    if (state.owner === undefined) this.#unowned--;
    else removeFrom(this.#owned, state.owner, key);
    if (owner === undefined) this.#unowned++;
    else addTo(this.#owned, owner, key);
    state.owner = owner;
    return 1;
  }
}
