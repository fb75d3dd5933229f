import { createHash, randomBytes, timingSafeEqual } from "node:crypto";
import type { Clock } from "../../base/clock.ts";
import { CorralError } from "../../base/errors.ts";
import type { Store } from "../../store/store.ts";

export const tokenRoles = ["node", "viewer", "operator", "admin"] as const;
export type TokenRole = (typeof tokenRoles)[number];

export interface TokenRecord {
  id: string;
  role: TokenRole;
  /** sha256 of the secret, hex: the secret itself is shown once and never stored. */
  secretHash: string;
  description: string;
  createdAt: number;
  expiresAt: number;
  /** 0: unlimited until expiry. */
  usesAllowed: number;
  usesLeft: number;
  revoked: boolean;
  createdBy: string;
}

export interface CreateTokenInput {
  role: TokenRole;
  ttlMs: number;
  uses: number;
  description: string;
  createdBy: string;
  /** `sha256:<hex>` of the CA; carried in the token so a joining node can pin the CA. */
  caFingerprint: string;
}

export const tokenLimits = { maxTtlMs: 30 * 86_400_000, maxUses: 100_000, maxDescription: 256 } as const;
const tokenPrefix = "/tokens/";
const tokenFormat = /^corral1\.([0-9a-f]{64})\.([0-9a-z]{12})\.([A-Za-z0-9_-]{43})$/;

/**
 * Join tokens (role `node`: a node presenting one is accepted at once) and operator access tokens.
 * The token text is `corral1.<ca sha256 hex>.<id>.<secret>`: self-describing, so a node given only the
 * token can pin the controller's CA before it sends anything.
 */
export class TokenRegistry {
  readonly #store: Store;
  readonly #clock: Clock;

  constructor(store: Store, clock: Clock) {
    this.#store = store;
    this.#clock = clock;
  }

  async create(input: CreateTokenInput): Promise<{ token: string; record: TokenRecord }> {
    if (!Number.isInteger(input.ttlMs) || input.ttlMs <= 0 || input.ttlMs > tokenLimits.maxTtlMs) {
      throw CorralError.invalidArgument("ttl", "must be more than 0 and at most 30 days");
    }
    if (!Number.isInteger(input.uses) || input.uses < 0 || input.uses > tokenLimits.maxUses) {
      throw CorralError.invalidArgument("uses", `must be 0 (unlimited) to ${tokenLimits.maxUses}`);
    }
    if (input.role !== "node" && input.uses !== 0) {
      throw CorralError.invalidArgument("uses", "only join tokens (role node) have a number of uses");
    }
    if (input.description.length > tokenLimits.maxDescription) {
      throw CorralError.invalidArgument(
        "description",
        `is longer than ${tokenLimits.maxDescription} characters`,
      );
    }
    const caHex = /^sha256:([0-9a-f]{64})$/.exec(input.caFingerprint)?.[1];
    if (caHex === undefined)
      throw CorralError.invalidArgument("caFingerprint", "must be sha256:<64 hex digits>");
    const id = randomBytes(8).readBigUInt64BE().toString(36).padStart(12, "0").slice(-12);
    const secret = randomBytes(32).toString("base64url");
    const now = this.#clock.now();
    const record: TokenRecord = {
      id,
      role: input.role,
      secretHash: hashSecret(secret),
      description: input.description,
      createdAt: now,
      expiresAt: now + input.ttlMs,
      usesAllowed: input.uses,
      usesLeft: input.uses,
      revoked: false,
      createdBy: input.createdBy,
    };
    const result = await this.#store.commit({
      compares: [{ key: tokenPrefix + id, modRevision: 0 }],
      ops: [{ type: "put", key: tokenPrefix + id, value: JSON.stringify(record) }],
    });
    if (!result.succeeded) throw new CorralError("ABORTED", "token id collision; try again");
    return { token: `corral1.${caHex}.${id}.${secret}`, record };
  }

  /**
   * Checks a token without spending a use: a join refused for another reason (a name already taken, a
   * bad CSR) must not cost the operator a use. Throws the refusal `redeem` would.
   */
  async check(token: string, expectedRole: TokenRole | "operator-any"): Promise<TokenRecord> {
    const { id, secret } = parseToken(token);
    const kv = await this.#store.get(tokenPrefix + id);
    const record = this.#usable(kv?.value, id, secret, expectedRole);
    if (record.usesAllowed !== 0 && record.usesLeft <= 0)
      throw unauthenticated(`token ${id} has no uses left`);
    return record;
  }

  /**
   * Checks a token and, for a join token with limited uses, spends one use — atomically, so two nodes
   * racing for the last use cannot both get in. Joins call it only once the node is admitted.
   */
  async redeem(token: string, expectedRole: TokenRole | "operator-any"): Promise<TokenRecord> {
    const { id, secret } = parseToken(token);
    for (let attempt = 0; attempt < 16; attempt++) {
      const kv = await this.#store.get(tokenPrefix + id);
      const record = this.#usable(kv?.value, id, secret, expectedRole);
      if (kv === undefined || record.usesAllowed === 0) return record;
      if (record.usesLeft <= 0) throw unauthenticated(`token ${id} has no uses left`);
      const next = { ...record, usesLeft: record.usesLeft - 1 };
      const result = await this.#store.commit({
        compares: [{ key: kv.key, modRevision: kv.modRevision }],
        ops: [{ type: "put", key: kv.key, value: JSON.stringify(next) }],
      });
      if (result.succeeded) return next;
    }
    throw new CorralError("ABORTED", "the token is being used by many callers at once; try again");
  }

  /** The stored record if the secret matches and the token is live and of the expected role. */
  #usable(
    stored: string | undefined,
    id: string,
    secret: string,
    expectedRole: TokenRole | "operator-any",
  ): TokenRecord {
    if (stored === undefined) throw unauthenticated("the token is not known to this cluster");
    const record = JSON.parse(stored) as TokenRecord;
    const expected = Buffer.from(record.secretHash, "hex");
    const given = Buffer.from(hashSecret(secret), "hex");
    if (expected.length !== given.length || !timingSafeEqual(expected, given)) {
      throw unauthenticated("the token is not known to this cluster");
    }
    if (record.revoked) throw unauthenticated(`token ${id} was revoked`);
    if (this.#clock.now() >= record.expiresAt) throw unauthenticated(`token ${id} expired`);
    const roleOk = expectedRole === "operator-any" ? record.role !== "node" : record.role === expectedRole;
    if (!roleOk) throw new CorralError("PERMISSION_DENIED", `token ${id} is a ${record.role} token`);
    return record;
  }

  async list(includeExpired = false): Promise<TokenRecord[]> {
    const { items } = await this.#store.list(tokenPrefix);
    const now = this.#clock.now();
    return items
      .map((kv) => JSON.parse(kv.value) as TokenRecord)
      .filter((record) => includeExpired || (!record.revoked && record.expiresAt > now))
      .sort((a, b) => a.createdAt - b.createdAt);
  }

  async revoke(id: string): Promise<TokenRecord> {
    for (let attempt = 0; attempt < 16; attempt++) {
      const kv = await this.#store.get(tokenPrefix + id);
      if (kv === undefined) throw CorralError.notFound("token", id);
      const record = { ...(JSON.parse(kv.value) as TokenRecord), revoked: true };
      const result = await this.#store.commit({
        compares: [{ key: kv.key, modRevision: kv.modRevision }],
        ops: [{ type: "put", key: kv.key, value: JSON.stringify(record) }],
      });
      if (result.succeeded) return record;
    }
    throw new CorralError("ABORTED", "the token changed while revoking it; try again");
  }
}

export function parseToken(token: string): { caFingerprint: string; id: string; secret: string } {
  const match = tokenFormat.exec(token.trim());
  if (match?.[1] === undefined || match[2] === undefined || match[3] === undefined) {
    throw unauthenticated("that is not a corral token (expected corral1.<ca>.<id>.<secret>)");
  }
  return { caFingerprint: `sha256:${match[1]}`, id: match[2], secret: match[3] };
}

function hashSecret(secret: string): string {
  return createHash("sha256").update(secret).digest("hex");
}

function unauthenticated(message: string): CorralError {
  return new CorralError("UNAUTHENTICATED", message);
}
