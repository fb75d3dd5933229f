import { EventEmitter } from "node:events";
import { type Campaign, Etcd3, type IOptions, type Lease } from "etcd3";
import type { Logger } from "../observability/logger.ts";
import { type EtcdTls, etcdCredentials } from "../store/etcd/etcd-client.ts";
import type { Fence } from "../store/etcd/etcd-store.ts";

/** Who runs the work that must run once: the liveness sweeper, placement, housekeeping, provisioning recovery. */
export interface LeaderGate {
  isLeader(): boolean;
  /** The name of the controller that leads, when known (this one's name while it leads). */
  leader(): string | undefined;
  /** `listener(true)` once this controller leads, `listener(false)` the moment it stops. */
  onChange(listener: (leading: boolean) => void): () => void;
  /** The claim leader-only writes carry (etcd checks it in each txn); undefined while not leading. */
  fence?(): Fence | undefined;
  /** Stops leading at once (a fenced write found the claim gone) and campaigns again. */
  lost?(reason: Error): void;
  close(): Promise<void>;
}

/** With one controller (SQLite) that controller always leads. */
export function alwaysLeader(name: string): LeaderGate {
  return {
    isLeader: () => true,
    leader: () => name,
    onChange: () => () => undefined,
    close: async () => undefined,
  };
}

export interface EtcdLeaderElectionOptions {
  readonly endpoints: readonly string[];
  /** The store's prefix; the election lives beside it, under `electionRoot + prefix + "/"`. */
  readonly prefix: string;
  /** The value campaigned: this controller's name (shown as the leader). */
  readonly name: string;
  /** Lease TTL in seconds (etcd's minimum is 1); default 10. */
  readonly ttlSeconds?: number;
  /** Wait before campaigning again after a lost lease or a failed campaign; default 1 000 ms. */
  readonly retryMs?: number;
  readonly logger: Logger;
  /** etcd's client TLS, as the store's client has it. */
  readonly tls?: EtcdTls;
}

/**
 * The election key cannot sit under the store's prefix: the store owns every etcd key starting with it
 * (its list("") would return the candidates). So it lives under its own root, one election per prefix.
 */
export const electionRoot = "__corral_election";

type WatchBackoff = NonNullable<NonNullable<IOptions["faultHandling"]>["watchBackoff"]>;

/**
 * etcd3 waits before re-opening a lost watch stream on a ref'd timer that nothing can clear,
 * and its default backoff grows to 30 s: after an etcd outage the leader observer stayed blind that
 * long, and a closed client kept the process alive that long. Doubling up to `maxMs` bounds both.
 */
function watchBackoff(ms: number, maxMs: number): WatchBackoff {
  return { duration: ms, next: () => watchBackoff(Math.min(ms * 2, maxMs), maxMs) };
}

/**
 * A campaign that is not yet elected waits on a watch of its predecessor's key, which neither
 * `resign()` nor the client's `close()` stops. Such a watch left behind (the campaign was given up
 * during an etcd outage, or this controller closed while not leading) is retried by etcd3 for ever —
 * after close too, each try failing at once and arming another ref'd timer — so the process never
 * exits. Each campaign has a namespace, hence a watch manager, of its own (see `#election()`): cancel
 * what is left in it. etcd3 (1.1) keeps these private, so this reaches in and tolerates their absence.
 */
function cancelCampaignWatches(campaign: Campaign): void {
  const internals = campaign as unknown as {
    namespace?: { watchManager?: { watchers?: readonly { cancel(): Promise<void> }[] } };
  };
  for (const watcher of [...(internals.namespace?.watchManager?.watchers ?? [])])
    watcher.cancel().catch(() => undefined);
}

/**
 * Leader election by an etcd lease and election key (etcd3's Campaign: the candidate whose key under
 * the election prefix was created first leads; its key dies with its lease).
 *
 * Fencing, twice over. In time: etcd expires the lease TTL seconds after the last keepalive it saw,
 * and then another controller may be elected. etcd3 only reports a lost lease after 2 × TTL without a
 * keepalive, which is too late, so this class steps down by itself once no keepalive has succeeded for
 * 2/3 of the TTL (keepalives go out every TTL/3) — before etcd can have handed the lead to anyone else.
 * In etcd: leader-only writes go through a fenced store whose txns compare the election key's create
 * revision (`fence()`), so a write of a deposed leader that was still in flight (a paused process, a
 * slow network) is refused by etcd rather than applied; the refusal calls `lost()`.
 */
export class EtcdLeaderElection implements LeaderGate {
  readonly #o: EtcdLeaderElectionOptions;
  readonly #client: Etcd3;
  readonly #events = new EventEmitter();
  readonly #ttlMs: number;
  #campaign: Campaign | undefined;
  #leading = false;
  #fenceClaim: Fence | undefined;
  #lastKeepAlive = 0;
  #fence: NodeJS.Timeout | undefined;
  #retry: NodeJS.Timeout | undefined;
  #observer: { leader(): string | undefined; cancel(): Promise<void> } | undefined;
  /** Campaigns given up while they may still open a watch; cancelled again on close. */
  readonly #abandoned = new Set<Campaign>();
  #closed = false;

  static async start(options: EtcdLeaderElectionOptions): Promise<EtcdLeaderElection> {
    const election = new EtcdLeaderElection(options);
    try {
      election.#observer = await election.#election().observe();
      election.#campaignNow();
      return election;
    } catch (error) {
      await election.close();
      throw error;
    }
  }

  private constructor(options: EtcdLeaderElectionOptions) {
    this.#o = options;
    this.#ttlMs = (options.ttlSeconds ?? 10) * 1000;
    const retryMs = options.retryMs ?? 1_000;
    this.#client = new Etcd3({
      hosts: [...options.endpoints],
      ...etcdCredentials(options.tls),
      faultHandling: { watchBackoff: watchBackoff(Math.min(100, retryMs), retryMs) },
    });
  }

  isLeader(): boolean {
    return this.#leading;
  }

  leader(): string | undefined {
    if (this.#leading) return this.#o.name;
    return this.#observer?.leader();
  }

  fence(): Fence | undefined {
    return this.#leading ? this.#fenceClaim : undefined;
  }

  lost(reason: Error): void {
    const campaign = this.#campaign;
    if (campaign !== undefined && this.#leading) this.#stepDown(campaign, reason);
  }

  onChange(listener: (leading: boolean) => void): () => void {
    this.#events.on("change", listener);
    return () => this.#events.off("change", listener);
  }

  #election() {
    const namespace = this.#client.namespace(`${electionRoot}${this.#o.prefix}/`);
    return namespace.election("controller", Math.max(1, Math.round(this.#ttlMs / 1000)));
  }

  #campaignNow(): void {
    if (this.#closed) return;
    const campaign = this.#election().campaign(this.#o.name);
    this.#campaign = campaign;
    // The campaign's lease is private in etcd3's types; its keepalives drive the local fence.
    const lease = (campaign as unknown as { lease: Lease }).lease;
    lease.on("keepaliveSucceeded", () => {
      this.#lastKeepAlive = Date.now();
    });
    campaign.on("elected", () => {
      if (this.#campaign !== campaign || this.#closed) return;
      this.#lastKeepAlive = Date.now();
      // The claim fenced writes carry: the campaign key and the revision that created it.
      this.#readClaim(campaign).then(
        (claim) => {
          if (this.#campaign !== campaign || this.#closed) return;
          this.#fenceClaim = claim;
          this.#lead(campaign);
        },
        (error: unknown) =>
          this.#stepDown(campaign, error instanceof Error ? error : new Error(String(error))),
      );
    });
    campaign.on("error", (error: Error) => this.#stepDown(campaign, error));
  }

  async #readClaim(campaign: Campaign): Promise<Fence> {
    const key = Buffer.from(await campaign.getCampaignKey(), "utf8");
    const response = await this.#client.kv.range({ key });
    const kv = response.kvs[0];
    if (kv === undefined) throw new Error("the election key vanished as this controller was elected");
    return { key, createRevision: Number(kv.create_revision) };
  }

  #lead(campaign: Campaign): void {
    this.#fence = setInterval(
      () => {
        if (Date.now() - this.#lastKeepAlive > (this.#ttlMs * 2) / 3)
          this.#stepDown(campaign, new Error("no lease keepalive for 2/3 of the TTL"));
      },
      Math.max(50, this.#ttlMs / 10),
    );
    this.#fence.unref();
    this.#set(true);
  }

  /** Stops leader work at once, gives up the lease (best effort) and campaigns again after a pause. */
  #stepDown(campaign: Campaign, error: Error): void {
    if (this.#campaign !== campaign) return;
    this.#campaign = undefined;
    this.#fenceClaim = undefined;
    if (this.#fence !== undefined) clearInterval(this.#fence);
    this.#fence = undefined;
    this.#set(false);
    this.#abandon(campaign);
    if (this.#closed) return;
    this.#o.logger.warn({ err: error }, "leader election: campaign lost; campaigning again");
    this.#retry = setTimeout(() => {
      this.#retry = undefined;
      this.#campaignNow();
    }, this.#o.retryMs ?? 1_000);
    this.#retry.unref();
  }

  /**
   * Gives up a campaign: revokes its lease and cancels its pending watch. Until it settles it may
   * still open one (it was between two etcd calls), so close() cancels it once more.
   */
  #abandon(campaign: Campaign): void {
    this.#abandoned.add(campaign);
    cancelCampaignWatches(campaign);
    // A campaign whose watch was cancelled never settles by itself, so it is let go on a timer: once
    // its resign is done and one more retry period has passed, whatever etcd call it was in has ended;
    // its watches are cancelled one last time.
    const retryMs = this.#o.retryMs ?? 1_000;
    void campaign
      .resign()
      .catch(() => undefined)
      .then(() => {
        const release = setTimeout(() => {
          cancelCampaignWatches(campaign);
          this.#abandoned.delete(campaign);
        }, retryMs);
        release.unref();
      });
  }

  #set(leading: boolean): void {
    if (this.#leading === leading) return;
    this.#leading = leading;
    this.#o.logger.info(
      { name: this.#o.name },
      leading ? "this controller leads" : "this controller no longer leads",
    );
    this.#events.emit("change", leading);
  }

  /** Resigns (the next candidate is elected at once rather than after the TTL) and closes the client. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    if (this.#retry !== undefined) clearTimeout(this.#retry);
    if (this.#fence !== undefined) clearInterval(this.#fence);
    const campaign = this.#campaign;
    this.#campaign = undefined;
    this.#set(false);
    await campaign?.resign().catch(() => undefined);
    if (campaign !== undefined) cancelCampaignWatches(campaign);
    for (const abandoned of this.#abandoned) cancelCampaignWatches(abandoned);
    this.#abandoned.clear();
    await this.#observer?.cancel().catch(() => undefined);
    this.#client.close();
  }
}
