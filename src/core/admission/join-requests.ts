import type { Clock } from "../../base/clock.ts";
import { CorralError } from "../../base/errors.ts";
import { defaults } from "../../defaults.ts";
import type { Store } from "../../store/store.ts";
import {
  decodeJoinRequest,
  encodeJoinRequest,
  type JoinRequestRecord,
  joinRequestKey,
  joinRequestPrefix,
  joinRequestSequenceKey,
} from "./join-request.ts";
import { sourceNetwork } from "./source-network.ts";

export interface JoinRequestLimits {
  /** Requests waiting at once, cluster-wide. */
  maxPending: number;
  /** New requests one source address may make per minute. */
  perSourcePerMinute: number;
  /** Requests waiting at once from one source address (default in src/defaults.ts). */
  perSource?: number;
  /** … and from one network, an IPv4 /24 or an IPv6 /64. */
  perNetwork?: number;
  /** How long a decided request stays listed (for tools that want to see what happened). */
  keepDecidedMs: number;
}

export type NewJoinRequest = Omit<
  JoinRequestRecord,
  "id" | "state" | "createdAt" | "expiresAt" | "decidedAt" | "decidedBy" | "reason"
>;

/**
 * Join requests waiting for an operator. The waiting caller and the operators may be on different
 * controllers, so the decision travels through the store and its event feed, not through memory.
 */
export class JoinRequestBook {
  readonly #store: Store;
  readonly #clock: Clock;
  readonly #limits: JoinRequestLimits;
  /** Request times per source address; old entries are dropped as they pass out of the window. */
  readonly #recentBySource = new Map<string, number[]>();

  /** Told of each request evicted to make room (the controller logs it). */
  readonly #onEvicted: (evicted: JoinRequestRecord, reason: string) => void;

  constructor(
    store: Store,
    clock: Clock,
    limits: JoinRequestLimits,
    onEvicted: (evicted: JoinRequestRecord, reason: string) => void = () => {},
  ) {
    this.#store = store;
    this.#clock = clock;
    this.#limits = limits;
    this.#onEvicted = onEvicted;
  }

  /**
   * Files a request, or returns the pending one for the same key (a node that reconnects while waiting
   * keeps its place instead of filing a second request).
   */
  async submit(input: NewJoinRequest, timeoutMs: number): Promise<JoinRequestRecord> {
    const pending = await this.list({ includeDecided: false });
    const existing = pending.find((r) => r.keyFingerprint === input.keyFingerprint);
    if (existing !== undefined) return existing;
    if (pending.some((r) => r.name === input.name)) {
      throw new CorralError(
        "ALREADY_EXISTS",
        `a join request for a node named "${input.name}" is already waiting`,
      );
    }
    this.#checkSourceShare(pending, input.sourceAddress);
    this.#admitFrom(input.sourceAddress);
    if (pending.length >= this.#limits.maxPending) await this.#makeRoom(pending, input.sourceAddress);
    for (let attempt = 0; attempt < 32; attempt++) {
      const sequence = await this.#store.get(joinRequestSequenceKey);
      const id = (sequence === undefined ? 0 : Number(sequence.value)) + 1;
      const now = this.#clock.now();
      const record: JoinRequestRecord = {
        ...input,
        id,
        state: "pending",
        createdAt: now,
        expiresAt: now + timeoutMs,
      };
      const result = await this.#store.commit({
        compares: [{ key: joinRequestSequenceKey, modRevision: sequence?.modRevision ?? 0 }],
        ops: [
          { type: "put", key: joinRequestSequenceKey, value: String(id) },
          { type: "put", key: joinRequestKey(id), value: encodeJoinRequest(record) },
        ],
      });
      if (result.succeeded) return record;
    }
    throw new CorralError("ABORTED", "too many join requests at once; try again");
  }

  async get(id: number): Promise<JoinRequestRecord> {
    const kv = await this.#store.get(joinRequestKey(id));
    if (kv === undefined) throw CorralError.notFound("join request", String(id));
    return decodeJoinRequest(kv.value);
  }

  /** Pending requests (oldest first), and with `includeDecided` the recently decided ones too. */
  async list(options: { includeDecided: boolean }): Promise<JoinRequestRecord[]> {
    const { items } = await this.#store.list(joinRequestPrefix);
    const now = this.#clock.now();
    return items
      .map((kv) => decodeJoinRequest(kv.value))
      .filter((r) => (r.state === "pending" ? r.expiresAt > now : options.includeDecided))
      .sort((a, b) => a.id - b.id);
  }

  /** A request by its number, or by the name of the node that asked. */
  async find(request: string): Promise<JoinRequestRecord> {
    const text = request.trim();
    if (text === "")
      throw CorralError.invalidArgument("request", "is empty; give the request number or the node's name");
    if (/^\d+$/.test(text)) return this.get(Number(text));
    const match = (await this.list({ includeDecided: false })).filter(
      (r) => r.name === text || r.nodeId === text,
    );
    if (match.length === 1 && match[0] !== undefined) return match[0];
    throw CorralError.notFound("pending join request", text);
  }

  async answer(id: number, accept: boolean, decidedBy: string, reason = ""): Promise<JoinRequestRecord> {
    return this.#decide(id, accept ? "accepted" : "rejected", decidedBy, reason);
  }

  /** The waiting caller gave up or its time ran out. */
  async expire(id: number): Promise<JoinRequestRecord> {
    return this.#decide(id, "expired", "controller", "no operator answered in time");
  }

  /** Resolves when the request is decided; rejects with CANCELLED when `signal` aborts first. */
  async waitForDecision(id: number, signal: AbortSignal): Promise<JoinRequestRecord> {
    const key = joinRequestKey(id);
    const from = (await this.#store.revision()) + 1;
    const current = await this.get(id);
    if (current.state !== "pending") return current;
    for await (const batch of this.#store.watch(from, { prefix: key, signal })) {
      for (const event of batch) {
        if (event.key !== key || event.value === undefined) continue;
        const record = decodeJoinRequest(event.value);
        if (record.state !== "pending") return record;
      }
    }
    throw new CorralError("CANCELLED", "stopped waiting for the join request");
  }

  /** Drops decided requests after they have been listed for a while, and pending ones long expired. */
  async prune(): Promise<number> {
    const { items } = await this.#store.list(joinRequestPrefix);
    const cutoff = this.#clock.now() - this.#limits.keepDecidedMs;
    const old = items.filter((kv) => {
      const r = decodeJoinRequest(kv.value);
      return (r.decidedAt ?? r.expiresAt) < cutoff;
    });
    if (old.length === 0) return 0;
    for (let i = 0; i < old.length; i += 100) {
      await this.#store.commit({
        ops: old.slice(i, i + 100).map((kv) => ({ type: "delete" as const, key: kv.key })),
      });
    }
    return old.length;
  }

  async #decide(
    id: number,
    state: JoinRequestRecord["state"],
    decidedBy: string,
    reason: string,
  ): Promise<JoinRequestRecord> {
    for (let attempt = 0; attempt < 32; attempt++) {
      const kv = await this.#store.get(joinRequestKey(id));
      if (kv === undefined) throw CorralError.notFound("join request", String(id));
      const record = decodeJoinRequest(kv.value);
      if (record.state !== "pending") {
        throw new CorralError("FAILED_PRECONDITION", `join request ${id} was already ${record.state}`);
      }
      const now = this.#clock.now();
      if (state !== "expired" && record.expiresAt <= now) {
        throw new CorralError("FAILED_PRECONDITION", `join request ${id} expired before it was answered`);
      }
      const decided: JoinRequestRecord = {
        ...record,
        state,
        decidedAt: now,
        decidedBy,
        ...(reason ? { reason } : {}),
      };
      const result = await this.#store.commit({
        compares: [{ key: kv.key, modRevision: kv.modRevision }],
        ops: [{ type: "put", key: kv.key, value: encodeJoinRequest(decided) }],
      });
      if (result.succeeded) return decided;
    }
    throw new CorralError("ABORTED", `join request ${id} kept changing; try again`);
  }

  /**
   * A few sources must not fill the list for everyone: each source address and each network (/24, /64)
   * may hold only so many of the waiting requests.
   */
  #checkSourceShare(pending: readonly JoinRequestRecord[], source: string): void {
    const perSource = this.#limits.perSource ?? defaults.joinRequests.perSource;
    const perNetwork = this.#limits.perNetwork ?? defaults.joinRequests.perNetwork;
    const fromSource = pending.filter((r) => r.sourceAddress === source).length;
    if (fromSource >= perSource) {
      throw new CorralError(
        "RESOURCE_EXHAUSTED",
        `${fromSource} join requests from ${source} are already waiting for an operator, the most one address may have (limits.joinRequests.perSource); wait for an answer or use a token`,
      );
    }
    const network = sourceNetwork(source);
    const fromNetwork = pending.filter((r) => sourceNetwork(r.sourceAddress) === network).length;
    if (fromNetwork >= perNetwork) {
      throw new CorralError(
        "RESOURCE_EXHAUSTED",
        `${fromNetwork} join requests from ${network} are already waiting for an operator, the most one network may have (limits.joinRequests.perNetwork); wait for an answer or use a token`,
      );
    }
  }

  /**
   * The list is full. Rather than turn the newcomer away, the oldest request of the network holding the
   * most is evicted (it ends `expired`, its caller hears RESOURCE_EXHAUSTED), as long as that network
   * holds more than the newcomer's would after it: a flood from a few networks cannot keep out everyone
   * else, and a network is never evicted for its own newcomer.
   */
  async #makeRoom(pending: readonly JoinRequestRecord[], source: string): Promise<void> {
    const byNetwork = new Map<string, JoinRequestRecord[]>();
    for (const record of pending) {
      const network = sourceNetwork(record.sourceAddress);
      byNetwork.set(network, [...(byNetwork.get(network) ?? []), record]);
    }
    const own = byNetwork.get(sourceNetwork(source))?.length ?? 0;
    let largest: [string, JoinRequestRecord[]] | undefined;
    for (const entry of byNetwork) {
      const [, records] = entry;
      const best = largest?.[1];
      // Ties go to the network whose oldest request is older (pending is sorted oldest first).
      if (best === undefined || records.length > best.length) largest = entry;
    }
    const victim = largest?.[1][0];
    if (largest === undefined || victim === undefined || largest[1].length <= own + 1) {
      throw new CorralError(
        "RESOURCE_EXHAUSTED",
        `${pending.length} join requests are already waiting for an operator, the most there may be (limits.joinRequests.maxPending); answer some (corral requests ls) or use a token`,
      );
    }
    const reason = `evicted to make room: ${pending.length} join requests were waiting (limits.joinRequests.maxPending), ${largest[1].length} of them from ${largest[0]}`;
    try {
      const evicted = await this.#decide(victim.id, "expired", "controller", reason);
      this.#onEvicted(evicted, reason);
    } catch (error) {
      // Decided meanwhile (answered, or evicted by another controller): that made room too.
      if (!(error instanceof CorralError) || error.code !== "FAILED_PRECONDITION") throw error;
    }
  }

  #admitFrom(source: string): void {
    const now = this.#clock.now();
    const windowStart = now - 60_000;
    if (this.#recentBySource.size > 10_000) {
      for (const [key, times] of this.#recentBySource) {
        if ((times.at(-1) ?? 0) < windowStart) this.#recentBySource.delete(key);
      }
    }
    const recent = (this.#recentBySource.get(source) ?? []).filter((t) => t > windowStart);
    if (recent.length >= this.#limits.perSourcePerMinute) {
      throw new CorralError(
        "RESOURCE_EXHAUSTED",
        `too many join requests from ${source}: at most ${this.#limits.perSourcePerMinute} a minute`,
      );
    }
    recent.push(now);
    this.#recentBySource.set(source, recent);
  }
}
