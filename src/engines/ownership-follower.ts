import { setTimeout as sleep } from "node:timers/promises";
import type { Clock } from "../base/clock.ts";
import { CorralError, ErrorCode } from "../base/errors.ts";
import { decodeClusterEvent, type NodeEvent } from "../core/events/cluster-event.ts";
import type { EventFeed } from "../core/events/event-feed.ts";
import type { NodeRecord } from "../core/nodes/node.ts";
import type { NodeRegistry } from "../core/nodes/node-registry.ts";
import {
  type Ack,
  type Caller,
  checkEligible,
  checkKey,
  checkRoom,
  closingMessage,
  countMoved,
  type DirectoryChange,
  decideConfirm,
  defaultOwnershipLimits,
  describe,
  drainedState,
  keyProblem,
  memberOfNode,
  type OwnershipLimits,
  reject,
  withoutClaim,
  withoutDrain,
} from "../core/ownership/ownership.ts";
import {
  claimView,
  type KnownMembers,
  nodeChange,
  ownershipChange,
} from "../core/ownership/ownership-changes.ts";
import {
  type DirectoryMember,
  type MemberView,
  type OwnerAnswer,
  OwnershipDirectory,
} from "../core/ownership/ownership-directory.ts";
import {
  type DrainReason,
  decodeKeyEntry,
  decodeMemberState,
  keyFromStoreKey,
  nodeIdFromMemberKey,
  type OwnershipEvent,
  ownershipKeyPrefix,
  ownershipMemberPrefix,
  type StoredMemberState,
} from "../core/ownership/ownership-keys.ts";
import { OwnershipWrites } from "../core/ownership/ownership-writes.ts";
import type { Store } from "../store/store.ts";

export interface OwnershipFollowerOptions {
  readonly store: Store;
  readonly registry: NodeRegistry;
  readonly feed: EventFeed;
  readonly clock: Clock;
  readonly limits?: Partial<OwnershipLimits>;
  /** Background work that failed (releasing a dead member's claims, following the feed). */
  readonly onError?: (error: unknown, what: string) => void;
  /** Compare-and-swap attempts before a write gives up with ABORTED; default 32. */
  readonly maxAttempts?: number;
  /** Pause before reloading the directory after the store's watch failed; default 500 ms. */
  readonly retryMs?: number;
}

/**
 * The ownership directory of the cluster, kept in the store and followed from the event feed: members are
 * the nodes (by host:port), keys are placed by weighted rendezvous hashing over ready, non-draining
 * members, claims override the hashing until released, and drains move a member's keys away.
 *
 * Only what cannot be derived is written (keys, claims, drains, weights); every write is a compare-and-swap
 * and an event. The in-memory directory is rebuilt from the feed, so several controllers over one store
 * agree. Housekeeping follows the node events: a member that goes down or leaves has its claims released
 * (its keys go to their next owners, and stay there when it comes back); a member drained by `Closing`
 * is undrained when it comes back after being down.
 */
export class OwnershipFollower implements AsyncDisposable {
  readonly #o: OwnershipFollowerOptions;
  readonly #writes: OwnershipWrites;
  readonly #limits: OwnershipLimits;
  #directory = new OwnershipDirectory();
  readonly #nodes = new Map<string, NodeRecord>();
  /** Nodes removed lately, so that a resumed watch can still describe changes made before the removal. */
  readonly #removed = new Map<string, { node: NodeRecord; revision: number }>();
  readonly #states = new Map<string, StoredMemberState>();
  readonly #aliases = new Map<string, string>();
  readonly #stop = new AbortController();
  #applied = 0;
  #waiters: { revision: number; resolve: () => void }[] = [];
  #ready: Promise<void> | undefined;
  #following: Promise<void> | undefined;
  #housekeeping: Promise<void> = Promise.resolve();

  constructor(options: OwnershipFollowerOptions) {
    this.#o = options;
    this.#limits = { ...defaultOwnershipLimits(), ...options.limits };
    this.#writes = new OwnershipWrites(options.store, options.maxAttempts ?? 32);
  }

  get limits(): OwnershipLimits {
    return this.#limits;
  }

  /** Loads the directory and starts following the feed; later calls return the same promise. */
  start(): Promise<void> {
    this.#ready ??= (async () => {
      const from = await this.#load();
      this.#following = this.#follow(from);
    })().catch((error: unknown) => {
      // The next call tries again.
      this.#ready = undefined;
      throw error;
    });
    return this.#ready;
  }

  /** The directory as it is now (read-only use). */
  get directory(): OwnershipDirectory {
    return this.#directory;
  }

  /** The store revision the directory reflects. */
  get revision(): number {
    return this.#applied;
  }

  // ------------------------------------------------------------------ reading

  /** A member by host:port (or a host learned by probing), node id or node name. */
  find(ref: string): DirectoryMember | undefined {
    const direct = this.#directory.find(ref);
    if (direct !== undefined) return direct;
    const aliased = this.#aliases.get(ref);
    return aliased === undefined ? undefined : this.#directory.member(aliased);
  }

  /** Like `find`, NOT_FOUND when there is no such member. */
  member(ref: string, field = "member"): DirectoryMember {
    if (typeof ref !== "string" || ref.trim() === "")
      throw CorralError.invalidArgument(field, "is empty; give a member's host:port, node id or node name");
    const member = this.find(ref.trim());
    if (member === undefined) {
      throw new CorralError(
        ErrorCode.NotFound,
        `member "${ref}" not found (looked up by host:port, node id and node name; members are nodes with an address that have not left)`,
        { details: { member: ref } },
      );
    }
    return member;
  }

  view(member: DirectoryMember): MemberView {
    return this.#directory.view(this.#directory.member(member.id) ?? member);
  }

  owner(key: string): OwnerAnswer {
    return this.#directory.owner(this.#checkKey(key));
  }

  /** Remembers that `host` reached member `nodeId` (a probe answered from it). */
  learnAlias(host: string, nodeId: string): void {
    if (this.#directory.memberByHost(host) !== undefined) return;
    this.#aliases.delete(host);
    this.#aliases.set(host, nodeId);
    while (this.#aliases.size > this.#limits.maxAliases) {
      const oldest = this.#aliases.keys().next().value;
      if (oldest === undefined) break;
      this.#aliases.delete(oldest);
    }
  }

  // ------------------------------------------------------------------ writing

  /** Makes keys known (placed by hashing unless claimed). Answers each key's owner and how many were new. */
  async registerKeys(
    keys: readonly string[],
  ): Promise<{ owners: (DirectoryMember | undefined)[]; added: number }> {
    await this.start();
    if (keys.length > this.#limits.maxKeysPerCall)
      throw CorralError.invalidArgument(
        "keys",
        `has ${keys.length} keys; the limit is ${this.#limits.maxKeysPerCall} a call`,
      );
    for (const [i, key] of keys.entries()) this.#checkKey(key, `keys[${i}]`);
    const fresh = [...new Set(keys)].filter((key) => !this.#directory.has(key));
    checkRoom(this.#directory, fresh.length, this.#limits);
    const { added, revision } = await this.#writes.registerKeys(fresh);
    await this.#caughtUp(revision);
    return { owners: keys.map((key) => this.#directory.owner(key).owner), added };
  }

  /** Pins a key to an eligible member until released. */
  async claim(
    key: string,
    memberRef: string,
    caller: Caller = {},
  ): Promise<{ owner: DirectoryMember; previous: DirectoryMember | undefined }> {
    await this.start();
    this.#checkKey(key);
    const member = this.member(memberRef);
    if (caller.isNode && caller.nodeId !== member.id)
      throw new CorralError(
        ErrorCode.PermissionDenied,
        `a node may claim keys only for itself, not for ${member.host}`,
      );
    checkEligible(member, "claim keys");
    if (!this.#directory.has(key)) checkRoom(this.#directory, 1, this.#limits);
    const previous = this.#directory.owner(key).owner;
    const now = this.#o.clock.now();
    const revision = await this.#writeKey(key, () => ({ claim: member.id, claimedAt: now }));
    await this.#caughtUp(revision);
    return { owner: this.#directory.member(member.id) ?? member, previous };
  }

  /** Drops a key's claim (and with `forget`, the key). */
  async release(
    key: string,
    forget: boolean,
    caller: Caller = {},
  ): Promise<{ owner: DirectoryMember | undefined; wasClaimed: boolean }> {
    await this.start();
    this.#checkKey(key);
    const claim = this.#directory.claimOf(key);
    if (caller.isNode && claim !== undefined && claim !== caller.nodeId) {
      const holder = this.#directory.member(claim)?.host ?? claim;
      throw new CorralError(
        ErrorCode.PermissionDenied,
        `key "${key}" is claimed by ${holder}; a node may release only its own claims`,
      );
    }
    let revision = 0;
    if (forget && this.#directory.has(key)) revision = await this.#writeKey(key, () => null);
    else if (claim !== undefined) revision = await this.#writeKey(key, (current) => withoutClaim(current));
    await this.#caughtUp(revision);
    return { owner: forget ? undefined : this.#directory.owner(key).owner, wasClaimed: claim !== undefined };
  }

  /** Starts or ends a member's drain; answers how many keys changed owner. */
  async drain(
    memberRef: string,
    draining: boolean,
    reason: DrainReason,
    caller: Caller = {},
  ): Promise<{ member: DirectoryMember; moved: number }> {
    await this.start();
    const member = this.member(memberRef);
    if (caller.isNode && caller.nodeId !== member.id)
      throw new CorralError(ErrorCode.PermissionDenied, `a node may drain only itself, not ${member.host}`);
    const before = this.#directory.owners();
    const now = this.#o.clock.now();
    let revision = await this.#writes.memberState(member.id, (current) =>
      drainedState(current, draining, reason, now),
    );
    if (draining) revision = Math.max(revision, await this.#releaseClaimsOf(member.id));
    await this.#caughtUp(revision);
    return {
      member: this.#directory.member(member.id) ?? member,
      moved: countMoved(before, this.#directory.owners()),
    };
  }

  /** Sets a member's weight (undefined: back to the label or 1); answers how many keys changed owner. */
  async setWeight(
    memberRef: string,
    weight: number | undefined,
    caller: Caller = {},
  ): Promise<{ member: DirectoryMember; moved: number }> {
    await this.start();
    const member = this.member(memberRef);
    if (caller.isNode && caller.nodeId !== member.id)
      throw new CorralError(
        ErrorCode.PermissionDenied,
        `a node may set only its own weight, not ${member.host}'s`,
      );
    if (weight !== undefined && !(Number.isFinite(weight) && weight > 0 && weight <= this.#limits.maxWeight))
      throw CorralError.invalidArgument(
        "weight",
        `must be above 0 and at most ${this.#limits.maxWeight}, got ${weight}`,
      );
    const before = this.#directory.owners();
    const revision = await this.#writeMemberState(member.id, (current) => {
      if (current.weight === weight) return "same";
      const { weight: _old, ...rest } = current;
      return weight === undefined ? rest : { ...rest, weight };
    });
    await this.#caughtUp(revision);
    return {
      member: this.#directory.member(member.id) ?? member,
      moved: countMoved(before, this.#directory.owners()),
    };
  }

  /**
   * go-cart-actor's ConfirmOwner: accepted when `newHost` is an eligible member and the transfer is
   * consistent with the directory — `newHost` already owns the key, or is its rendezvous owner (the key
   * goes back to hashing), or the caller is the key's current owner handing it over (a claim for
   * `newHost`). Every accepted transfer is written, so it is an event.
   */
  async confirmOwner(key: string, newHost: string, caller: Caller = {}): Promise<Ack> {
    await this.start();
    if (typeof key !== "string" || key === "") return reject("cart_id is empty");
    const problem = keyProblem(key, this.#limits);
    if (problem !== undefined) return reject(`cart_id ${problem}`);
    if (typeof newHost !== "string" || newHost.trim() === "") return reject("new_host is empty");
    const target = this.find(newHost.trim());
    if (target === undefined) return reject(`new_host ${newHost} is not a member of this cluster`);
    if (target.status !== "ready")
      return reject(`new_host ${describe(target)} is ${target.status}, not ready`);
    if (target.draining !== undefined) return reject(`new_host ${describe(target)} is draining`);
    if (!this.#directory.has(key) && this.#directory.size >= this.#limits.maxKeys)
      return reject(`the directory is full (${this.#limits.maxKeys} keys)`);

    const decision = decideConfirm(this.#directory, key, target, caller, this.#o.clock.now());
    if ("refused" in decision) return reject(decision.refused);
    const revision = await this.#writes.key(key, decision.change);
    const message = decision.message;
    await this.#caughtUp(revision);
    return { accepted: true, message };
  }

  /** go-cart-actor's Closing: the host drains; its keys move to their next owners before this answers. */
  async closing(host: string, caller: Caller = {}): Promise<Ack> {
    await this.start();
    if (typeof host !== "string" || host.trim() === "") return reject("host is empty");
    const member = this.find(host.trim());
    if (member === undefined) return reject(`host ${host} is not a member of this cluster`);
    const { member: after, moved } = await this.drain(member.id, true, "closing", caller);
    return { accepted: true, message: closingMessage(after, moved, this.#directory) };
  }

  // ------------------------------------------------------------------ watching

  /** The members (and claims) now, then every change, in revision order; resumable by revision. */
  async *watch(options: {
    fromRevision?: number;
    includeClaims?: boolean;
    signal: AbortSignal;
  }): AsyncGenerator<DirectoryChange> {
    await this.start();
    let from = options.fromRevision ?? 0;
    if (!Number.isSafeInteger(from) || from < 0)
      throw CorralError.invalidArgument("from_revision", "must be a non-negative integer");
    if (from === 0) {
      const revision = this.#applied;
      for (const member of this.#directory.views()) yield { type: "snapshot", revision, member };
      if (options.includeClaims) {
        for (const [key, nodeId] of this.#directory.claims())
          yield { type: "snapshot-claim", revision, claim: claimView(this.#directory, key, nodeId) };
      }
      yield { type: "synced", revision };
      from = revision + 1;
    }
    for await (const event of this.#o.feed.watch({
      fromRevision: from,
      kinds: ["node", "ownership"],
      signal: options.signal,
    })) {
      const change =
        event.kind === "node"
          ? nodeChange(this.#known(), event)
          : ownershipChange(this.#known(), event, options.includeClaims === true);
      if (change !== undefined) yield change;
    }
  }

  /** What the follower knows beyond the directory, for describing feed events to watchers. */
  #known(): KnownMembers {
    return {
      directory: this.#directory,
      nodes: this.#nodes,
      removed: this.#removed,
      states: this.#states,
      limits: this.#limits,
    };
  }

  // ------------------------------------------------------------------ following the store

  async #load(): Promise<number> {
    const directory = new OwnershipDirectory();
    this.#nodes.clear();
    this.#states.clear();
    const { nodes, revision } = await this.#o.registry.list();
    const members = await this.#listAll(ownershipMemberPrefix);
    const keys = await this.#listAll(ownershipKeyPrefix);
    for (const kv of members) this.#states.set(nodeIdFromMemberKey(kv.key), decodeMemberState(kv.value));
    for (const node of nodes) {
      this.#nodes.set(node.id, node);
      const member = memberOfNode(node, this.#states.get(node.id), this.#limits);
      if (member !== undefined) directory.upsertMember(member);
    }
    for (const kv of keys) directory.setKey(keyFromStoreKey(kv.key), decodeKeyEntry(kv.value).claim);
    this.#directory = directory;
    this.#applied = revision;
    // Claims of members that died or left while no controller was watching.
    for (const id of new Set(directory.claims().values())) {
      const member = directory.member(id);
      if (member === undefined || member.status === "down")
        this.#houseKeep(`release the claims of ${id}`, () => this.#releaseClaimsOf(id));
    }
    return revision + 1;
  }

  async #listAll(prefix: string) {
    const items = [];
    let startAfter: string | undefined;
    for (;;) {
      const page = await this.#o.store.list(prefix, {
        limit: 5_000,
        ...(startAfter === undefined ? {} : { startAfter }),
      });
      items.push(...page.items);
      if (!page.more) return items;
      startAfter = page.items.at(-1)?.key;
    }
  }

  /**
   * Follows the store in whole transactions (a watch batch never splits one), so that a revision counts
   * as applied only once all of its events are: a caller waiting for its own write then sees all of it.
   */
  async #follow(fromRevision: number): Promise<void> {
    let from = fromRevision;
    try {
      while (!this.#stop.signal.aborted) {
        try {
          for await (const batch of this.#o.store.watch(from, { signal: this.#stop.signal })) {
            for (const stored of batch) {
              const event = decodeClusterEvent(stored);
              if (event?.kind === "node") this.#applyNode(event);
              else if (event?.kind === "ownership") this.#applyOwnership(event);
            }
            const last = batch.at(-1);
            if (last !== undefined) {
              this.#advance(last.revision);
              from = last.revision + 1;
            }
          }
          return;
        } catch (error) {
          if (this.#stop.signal.aborted) return;
          const corral = CorralError.from(error);
          if (corral.code === ErrorCode.Unavailable) return; // the store closed
          this.#o.onError?.(error, "follow the store");
          const resume = Number(corral.details.resumeRevision);
          if (corral.code === ErrorCode.ResourceExhausted && Number.isSafeInteger(resume)) from = resume;
          else {
            await sleep(this.#o.retryMs ?? 500, undefined, { signal: this.#stop.signal }).catch(
              () => undefined,
            );
            if (this.#stop.signal.aborted) return;
            from = await this.#load().catch((reloadError: unknown) => {
              this.#o.onError?.(reloadError, "reload the ownership directory");
              return from;
            });
          }
        }
      }
    } finally {
      // Nobody will move the directory any more: callers waiting for their writes stop waiting.
      for (const waiter of this.#waiters) waiter.resolve();
      this.#waiters = [];
    }
  }

  #applyNode(event: NodeEvent): void {
    const node = event.node;
    if (node === undefined) return;
    const state = this.#states.get(node.id);
    if (event.type === "node.deleted") {
      this.#nodes.delete(node.id);
      this.#removed.delete(node.id);
      this.#removed.set(node.id, { node, revision: event.revision });
      if (this.#removed.size > this.#limits.maxAliases) {
        const oldest = this.#removed.keys().next().value;
        if (oldest !== undefined) this.#removed.delete(oldest);
      }
      this.#directory.removeMember(node.id);
      if (this.#directory.claimsOf(node.id).length > 0)
        this.#houseKeep(`release the claims of removed node ${node.id}`, () =>
          this.#releaseClaimsOf(node.id),
        );
      if (state !== undefined)
        this.#houseKeep(`forget the ownership state of removed node ${node.id}`, () =>
          this.#deleteMemberState(node.id),
        );
      return;
    }
    this.#nodes.set(node.id, node);
    const member = memberOfNode(node, state, this.#limits);
    if (member === undefined) this.#directory.removeMember(node.id);
    else this.#directory.upsertMember(member);
    const lost = member === undefined || member.status === "down";
    if (lost && this.#directory.claimsOf(node.id).length > 0)
      this.#houseKeep(`release the claims of ${node.name}`, () => this.#releaseClaimsOf(node.id));
    const back =
      node.status === "ready" &&
      (event.previous === undefined || ["down", "left", "pending"].includes(event.previous.status));
    if (back && state?.drain?.reason === "closing")
      this.#houseKeep(`undrain ${node.name}, back after closing`, async () => {
        const revision = await this.#writeMemberState(node.id, (current) =>
          current.drain?.reason === "closing" ? withoutDrain(current) : "same",
        );
        return revision;
      });
  }

  #applyOwnership(event: OwnershipEvent): void {
    if (event.nodeId !== undefined) {
      if (event.state === undefined) this.#states.delete(event.nodeId);
      else this.#states.set(event.nodeId, event.state);
      const node = this.#nodes.get(event.nodeId);
      if (node === undefined) return;
      const member = memberOfNode(node, event.state, this.#limits);
      if (member === undefined) this.#directory.removeMember(node.id);
      else this.#directory.upsertMember(member);
      return;
    }
    if (event.ownershipKey === undefined) return;
    if (event.type === "ownership.key.deleted") this.#directory.deleteKey(event.ownershipKey);
    else this.#directory.setKey(event.ownershipKey, event.entry?.claim);
  }

  #advance(revision: number): void {
    if (revision <= this.#applied) return;
    this.#applied = revision;
    const due = this.#waiters.filter((w) => w.revision <= revision);
    if (due.length === 0) return;
    this.#waiters = this.#waiters.filter((w) => w.revision > revision);
    for (const waiter of due) waiter.resolve();
  }

  /** Waits (bounded) until the directory shows the store at `revision`: a caller reads its own write. */
  async #caughtUp(revision: number): Promise<void> {
    if (revision <= this.#applied || this.#stop.signal.aborted) return;
    await new Promise<void>((resolve) => {
      const timer = setTimeout(done, this.#limits.catchUpMs);
      const waiter = { revision, resolve: done };
      this.#waiters.push(waiter);
      function done() {
        clearTimeout(timer);
        resolve();
      }
    });
  }

  /** Background work from events, one at a time; failures are reported, not thrown. */
  #houseKeep(what: string, work: () => Promise<unknown>): void {
    this.#housekeeping = this.#housekeeping.then(async () => {
      if (this.#stop.signal.aborted) return;
      try {
        await work();
      } catch (error) {
        if (!this.#stop.signal.aborted) this.#o.onError?.(error, what);
      }
    });
  }

  // ------------------------------------------------------------------ store writes

  #writeKey(key: string, change: Parameters<OwnershipWrites["key"]>[1]): Promise<number> {
    return this.#writes.key(key, change);
  }

  #writeMemberState(nodeId: string, change: Parameters<OwnershipWrites["memberState"]>[1]): Promise<number> {
    return this.#writes.memberState(nodeId, change);
  }

  #deleteMemberState(nodeId: string): Promise<number> {
    return this.#writes.deleteMemberState(nodeId);
  }

  /** Drops every claim a member holds; answers the last revision written. */
  #releaseClaimsOf(nodeId: string): Promise<number> {
    return this.#writes.releaseClaims(nodeId, this.#directory.claimsOf(nodeId));
  }

  #checkKey(key: string, field = "key"): string {
    return checkKey(key, this.#limits, field);
  }

  async close(): Promise<void> {
    this.#stop.abort();
    for (const waiter of this.#waiters) waiter.resolve();
    this.#waiters = [];
    await this.#following?.catch(() => undefined);
    await this.#housekeeping;
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.close();
  }
}
