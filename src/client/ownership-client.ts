/**
 * corral's ownership client for actor hosts (`import { OwnershipClient } from "corral/ownership"`).
 *
 * It keeps a local snapshot of the cluster's members and claims, fed by `corral.v1.MembersService/
 * WatchMembers` (resumed by revision after a broken connection, resynchronised from scratch when the
 * server cannot resume), and resolves the owner of any key locally with the same rendezvous function the
 * controller uses (`src/core/ownership/ownership-hash.ts`): no RPC per lookup. Claims, releases, drains and
 * go-cart-actor's Closing / ConfirmOwner are calls. `onClosing` fires when a member starts draining.
 *
 * It connects to the controller's cluster listener with mTLS (a client certificate from the cluster's
 * CA: `credentialsDir` with client.crt, client.key and ca.crt, or the PEM strings), or in plaintext to a
 * loopback address: the controller's bridge, or the local API of the agent on the same machine (which
 * passes the calls on with its node's identity, so claims made there are that node's).
 */
import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { type Client, Code, ConnectError, createClient } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import { isLoopbackHost, parseHostPort } from "../base/address.ts";
import { type Candidate, candidates, type HashMember, rendezvous } from "../core/ownership/ownership-hash.ts";
import { ControlPlane } from "../gen/control_plane_pb.ts";
import {
  type KeyClaim,
  MemberEventType,
  type Member as MemberMessage,
  MembersService,
  type WatchMembersResponse,
} from "../gen/corral/v1/members_pb.ts";
import { NodeStatus } from "../gen/corral/v1/nodes_pb.ts";

export type MemberStatus = "pending" | "ready" | "suspect" | "down" | "left" | "unknown";

/** A member of the cluster as the client sees it. */
export interface Member extends HashMember {
  /** The node id: what placement hashes (it survives address changes). */
  readonly id: string;
  /** host:port, go-cart-actor's host. */
  readonly host: string;
  readonly name: string;
  readonly status: MemberStatus;
  readonly draining: boolean;
  /** "closing" or "operator" while draining. */
  readonly drainReason: string;
  readonly weight: number;
  /** Ready and not draining: it receives keys. */
  readonly eligible: boolean;
  /** When the snapshot last heard of it: keys it owned, and its load against its fair share. */
  readonly keyCount: number;
  readonly load: number;
}

export interface Ack {
  readonly accepted: boolean;
  readonly message: string;
}

export type OwnershipChange =
  | { readonly type: "synced"; readonly revision: number }
  | {
      readonly type: "member";
      readonly revision: number;
      readonly member: Member;
      readonly previous?: Member;
    }
  | { readonly type: "member-gone"; readonly revision: number; readonly member: Member }
  | {
      readonly type: "claim";
      readonly revision: number;
      readonly key: string;
      readonly holder: string | undefined;
    };

export interface OwnershipClientOptions {
  /** host:port of the controller's cluster listener (with TLS), its loopback bridge, or an agent's local API. */
  readonly address: string;
  /** mTLS: a directory holding client.crt, client.key and ca.crt (what `corral` writes for admins). */
  readonly credentialsDir?: string;
  /** mTLS with PEM strings. */
  readonly tls?: { readonly ca: string; readonly cert: string; readonly key: string };
  /** Plaintext to an address that is not loopback (refused unless set). */
  readonly insecure?: boolean;
  /** How long `connect` waits for the first complete snapshot; default 10 s. */
  readonly syncTimeoutMs?: number;
  /** Deadline of each unary call; default 10 s. */
  readonly callTimeoutMs?: number;
  /** Waits between watch reconnects: first and longest (doubling, with jitter); default 200 ms and 5 s. */
  readonly backoff?: { readonly initialMs: number; readonly maxMs: number };
  /** Told about watch failures it recovers from; default: silent. */
  readonly onWatchError?: (error: unknown) => void;
}

const fatalCodes = new Set([Code.PermissionDenied, Code.Unauthenticated, Code.Unimplemented]);

const statusNames: Record<number, MemberStatus> = {
  [NodeStatus.PENDING]: "pending",
  [NodeStatus.READY]: "ready",
  [NodeStatus.SUSPECT]: "suspect",
  [NodeStatus.DOWN]: "down",
  [NodeStatus.LEFT]: "left",
};

function memberOf(message: MemberMessage): Member {
  return {
    id: message.nodeId,
    host: message.host,
    name: message.name,
    status: statusNames[message.status] ?? "unknown",
    draining: message.draining,
    drainReason: message.drainReason,
    weight: message.weight > 0 ? message.weight : 1,
    eligible: message.status === NodeStatus.READY && !message.draining && message.host !== "",
    keyCount: Number(message.keyCount),
    load: message.load,
  };
}

/**
 * The client. `OwnershipClient.connect(options)` answers once the snapshot is complete; `owner(key)` is
 * then a local computation. Close it when done (`await using` works too).
 */
export class OwnershipClient implements AsyncDisposable {
  readonly #members: Client<typeof MembersService>;
  readonly #controlPlane: Client<typeof ControlPlane>;
  readonly #o: OwnershipClientOptions;
  readonly #stop = new AbortController();
  #byId = new Map<string, Member>();
  #byHost = new Map<string, string>();
  #claims = new Map<string, string>();
  #ring: Candidate<Member>[] = [];
  #revision = 0;
  #synced = false;
  #loop: Promise<void> | undefined;
  readonly #closingListeners = new Set<(member: Member) => void>();
  readonly #changeListeners = new Set<(change: OwnershipChange) => void>();
  #firstSync: { resolve: () => void; reject: (error: unknown) => void } | undefined;
  #lastError: unknown;

  private constructor(options: OwnershipClientOptions, transport: ReturnType<typeof createGrpcTransport>) {
    this.#o = options;
    this.#members = createClient(MembersService, transport);
    this.#controlPlane = createClient(ControlPlane, transport);
  }

  /** Connects and waits for the first full snapshot of members and claims. */
  static async connect(options: OwnershipClientOptions): Promise<OwnershipClient> {
    const transport = await transportFor(options);
    const client = new OwnershipClient(options, transport);
    const synced = new Promise<void>((resolve, reject) => {
      client.#firstSync = { resolve, reject };
    });
    client.#loop = client.#watchLoop();
    const timeoutMs = options.syncTimeoutMs ?? 10_000;
    let timer: NodeJS.Timeout | undefined;
    const timedOut = new Promise<never>((_, reject) => {
      timer = setTimeout(() => {
        const last = client.#lastError === undefined ? "" : ` (last error: ${String(client.#lastError)})`;
        reject(new Error(`no membership snapshot from ${options.address} within ${timeoutMs} ms${last}`));
      }, timeoutMs);
    });
    try {
      await Promise.race([synced, timedOut]);
      return client;
    } catch (error) {
      await client.close();
      throw error;
    } finally {
      clearTimeout(timer);
    }
  }

  // ------------------------------------------------------------------ local reads

  /** The member that owns `key` now, computed locally; undefined when no member is eligible. */
  owner(key: string): Member | undefined {
    const holder = this.#claims.get(key);
    if (holder !== undefined) {
      const member = this.#byId.get(holder);
      if (member?.eligible) return member;
    }
    return rendezvous(key, this.#ring)?.member;
  }

  /** True when `host` (host:port, node id or name) owns `key` now. */
  owns(host: string, key: string): boolean {
    const member = this.member(host);
    return member !== undefined && this.owner(key)?.id === member.id;
  }

  /** By host:port, node id or node name. */
  member(ref: string): Member | undefined {
    const id = this.#byHost.get(ref);
    if (id !== undefined) return this.#byId.get(id);
    const byId = this.#byId.get(ref);
    if (byId !== undefined) return byId;
    const named = [...this.#byId.values()].filter((m) => m.name === ref);
    return named.length === 1 ? named[0] : undefined;
  }

  members(): Member[] {
    return [...this.#byId.values()].sort((a, b) => (a.host < b.host ? -1 : a.host > b.host ? 1 : 0));
  }

  /** The hosts that receive keys now. */
  eligibleHosts(): string[] {
    return this.#ring.map((c) => c.member.host).sort();
  }

  /** key → holder node id, for every claim. */
  claims(): ReadonlyMap<string, string> {
    return this.#claims;
  }

  /** The store revision the snapshot reflects. */
  get revision(): number {
    return this.#revision;
  }

  /** True once a complete snapshot has arrived (after `connect`, always). */
  get synced(): boolean {
    return this.#synced;
  }

  // ------------------------------------------------------------------ calls

  /** Pins `key` to a member (default: the caller's own node, when it calls as a node). */
  async claim(key: string, member = ""): Promise<Member | undefined> {
    const reply = await this.#members.claim({ key, member }, this.#callOptions());
    return reply.owner === undefined ? undefined : memberOf(reply.owner);
  }

  /** Drops the claim on `key` (with `forget`, the directory forgets the key). */
  async release(key: string, options: { forget?: boolean } = {}): Promise<{ wasClaimed: boolean }> {
    const reply = await this.#members.release({ key, forget: options.forget ?? false }, this.#callOptions());
    return { wasClaimed: reply.wasClaimed };
  }

  /** Makes keys known to the directory; answers each one's owner host. */
  async register(keys: readonly string[]): Promise<string[]> {
    return (await this.#members.registerKeys({ keys: [...keys] }, this.#callOptions())).owners;
  }

  /** The keys the directory knows that `member` owns (a call, not the snapshot). */
  async keysOf(member: string): Promise<string[]> {
    return (await this.#members.listKeys({ member }, this.#callOptions())).keys;
  }

  /** Starts (or with `draining: false` ends) a member's drain; answers how many keys moved. */
  async drain(member: string, draining = true): Promise<number> {
    return Number((await this.#members.drain({ member, draining }, this.#callOptions())).keysMoved);
  }

  /** go-cart-actor's Closing for `host`: it drains, its keys move before the answer. */
  async closing(host: string): Promise<Ack> {
    const ack = await this.#controlPlane.closing({ host }, this.#callOptions());
    return { accepted: ack.accepted, message: ack.message };
  }

  /** go-cart-actor's ConfirmOwner. */
  async confirmOwner(key: string, newHost: string): Promise<Ack> {
    const ack = await this.#controlPlane.confirmOwner({ cartId: key, newHost }, this.#callOptions());
    return { accepted: ack.accepted, message: ack.message };
  }

  // ------------------------------------------------------------------ listening

  /** Called when a member starts draining (Closing or `corral drain`); answers an unsubscribe. */
  onClosing(listener: (member: Member) => void): () => void {
    this.#closingListeners.add(listener);
    return () => this.#closingListeners.delete(listener);
  }

  /** Called after every change applied to the snapshot; answers an unsubscribe. */
  onChange(listener: (change: OwnershipChange) => void): () => void {
    this.#changeListeners.add(listener);
    return () => this.#changeListeners.delete(listener);
  }

  // ------------------------------------------------------------------ the watch

  async #watchLoop(): Promise<void> {
    const initialMs = this.#o.backoff?.initialMs ?? 200;
    const maxMs = this.#o.backoff?.maxMs ?? 5_000;
    let delay = initialMs;
    let from = 0;
    const signal = this.#stop.signal;
    while (!signal.aborted) {
      let staging: { members: Map<string, Member>; claims: Map<string, string> } | undefined =
        from === 0 ? { members: new Map(), claims: new Map() } : undefined;
      try {
        // A watch lasts as long as the client: no deadline.
        for await (const event of this.#members.watchMembers(
          { fromRevision: BigInt(from), includeClaims: true },
          { signal, timeoutMs: 0 },
        )) {
          const revision = Number(event.revision);
          if (staging !== undefined) {
            if (event.type === MemberEventType.SNAPSHOT) {
              if (event.member !== undefined)
                staging.members.set(event.member.nodeId, memberOf(event.member));
              if (event.claim !== undefined) staging.claims.set(event.claim.key, event.claim.nodeId);
              continue;
            }
            if (event.type === MemberEventType.SYNCED) {
              this.#replace(staging.members, staging.claims, revision);
              staging = undefined;
              // Resume from the listing's revision: replays are idempotent.
              from = Math.max(1, revision);
              delay = initialMs;
              continue;
            }
          }
          this.#apply(event);
          // Several events share a revision (one transaction); resuming from it replays them harmlessly.
          from = Math.max(from, revision);
          delay = initialMs;
        }
      } catch (error) {
        if (signal.aborted) return;
        const code = error instanceof ConnectError ? error.code : undefined;
        // Lagged too far, or history compacted: start again from a fresh listing.
        if (code === Code.ResourceExhausted || code === Code.OutOfRange) from = 0;
        this.#lastError = error;
        // Retrying cannot fix who we are or what the server serves: tell `connect` at once.
        if (this.#firstSync !== undefined && code !== undefined && fatalCodes.has(code)) {
          this.#firstSync.reject(error);
          this.#firstSync = undefined;
          return;
        }
        this.#o.onWatchError?.(error);
      }
      if (signal.aborted) return;
      await sleep(delay * (0.5 + Math.random() / 2), undefined, { signal }).catch(() => undefined);
      delay = Math.min(maxMs, delay * 2);
    }
  }

  #replace(members: Map<string, Member>, claims: Map<string, string>, revision: number): void {
    const before = this.#byId;
    this.#byId = members;
    this.#byHost = new Map([...members.values()].map((m) => [m.host, m.id]));
    this.#claims = claims;
    this.#revision = revision;
    this.#reRing();
    this.#synced = true;
    for (const member of members.values()) {
      if (member.draining && before.get(member.id)?.draining === false) this.#emitClosing(member);
    }
    this.#emit({ type: "synced", revision });
    this.#firstSync?.resolve();
    this.#firstSync = undefined;
  }

  #apply(event: WatchMembersResponse): void {
    const revision = Number(event.revision);
    this.#revision = Math.max(this.#revision, revision);
    switch (event.type) {
      case MemberEventType.PUT: {
        if (event.member === undefined) return;
        const member = memberOf(event.member);
        const previous = this.#byId.get(member.id);
        if (previous !== undefined && this.#byHost.get(previous.host) === previous.id)
          this.#byHost.delete(previous.host);
        this.#byId.set(member.id, member);
        this.#byHost.set(member.host, member.id);
        this.#reRing();
        if (member.draining && !previous?.draining) this.#emitClosing(member);
        this.#emit({ type: "member", revision, member, ...(previous === undefined ? {} : { previous }) });
        return;
      }
      case MemberEventType.DELETED: {
        if (event.member === undefined) return;
        const member = this.#byId.get(event.member.nodeId) ?? memberOf(event.member);
        this.#byId.delete(member.id);
        if (this.#byHost.get(member.host) === member.id) this.#byHost.delete(member.host);
        this.#reRing();
        this.#emit({ type: "member-gone", revision, member });
        return;
      }
      case MemberEventType.CLAIMED:
      case MemberEventType.RELEASED:
        this.#applyClaim(event.type, event.claim, revision);
        return;
      default:
        return;
    }
  }

  #applyClaim(type: MemberEventType, claim: KeyClaim | undefined, revision: number): void {
    if (claim === undefined) return;
    if (type === MemberEventType.CLAIMED) this.#claims.set(claim.key, claim.nodeId);
    else if (this.#claims.get(claim.key) === claim.nodeId) this.#claims.delete(claim.key);
    this.#emit({ type: "claim", revision, key: claim.key, holder: this.#claims.get(claim.key) });
  }

  #reRing(): void {
    this.#ring = candidates([...this.#byId.values()].filter((m) => m.eligible));
  }

  #emitClosing(member: Member): void {
    for (const listener of this.#closingListeners) {
      try {
        listener(member);
      } catch {
        // A listener's failure is its own.
      }
    }
  }

  #emit(change: OwnershipChange): void {
    for (const listener of this.#changeListeners) {
      try {
        listener(change);
      } catch {
        // A listener's failure is its own.
      }
    }
  }

  #callOptions() {
    return { timeoutMs: this.#o.callTimeoutMs ?? 10_000, signal: this.#stop.signal };
  }

  async close(): Promise<void> {
    this.#stop.abort();
    this.#firstSync?.reject(new Error("the ownership client was closed"));
    this.#firstSync = undefined;
    await this.#loop;
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.close();
  }
}

async function transportFor(options: OwnershipClientOptions) {
  const { host } = parseHostPort(options.address, "address");
  let tls = options.tls;
  if (tls === undefined && options.credentialsDir !== undefined) {
    const dir = options.credentialsDir;
    const [ca, cert, key] = await Promise.all(
      ["ca.crt", "client.crt", "client.key"].map((file) => readFile(join(dir, file), "utf8")),
    );
    tls = { ca: ca ?? "", cert: cert ?? "", key: key ?? "" };
  }
  if (tls === undefined && !isLoopbackHost(host) && !options.insecure) {
    throw new Error(
      `${options.address} is not a loopback address: plaintext is for loopback only (the controller's bridge, ` +
        "an agent's local API); give credentialsDir or tls for the cluster listener, or insecure: true",
    );
  }
  return createGrpcTransport({
    baseUrl: `${tls === undefined ? "http" : "https"}://${options.address}`,
    ...(tls === undefined ? {} : { nodeOptions: { ca: tls.ca, cert: tls.cert, key: tls.key } }),
  });
}
