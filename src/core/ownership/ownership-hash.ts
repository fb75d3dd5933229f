/**
 * Weighted rendezvous (highest-random-weight) hashing: the one implementation, used by the controller's
 * ownership directory and by the client library that resolves owners locally, so both always agree.
 *
 * Every (key, member) pair gets a pseudo-random number h in (0, 1); the member's score is
 * `-weight / ln(h)` (the standard weighted HRW), and the key belongs to the member with the highest score.
 * With equal weights that is simply the member with the highest h. When a member goes, only the keys it
 * won move (each to its runner-up); when one comes, it takes only the keys it now wins: about K/N keys.
 *
 * The hash is two 32-bit murmur3-style hashes of the key's UTF-16 code units (seeded differently),
 * combined with the member's pair through murmur3's finalizer into 53 random bits. Everything is 32-bit
 * integer arithmetic (Math.imul), so it is exact and identical in every JavaScript engine.
 */

/** What the hashing needs to know of a member: a stable id and its weight. */
export interface HashMember {
  /** The member's stable identity (corral uses the node id, which survives address changes). */
  readonly id: string;
  /** > 0. */
  readonly weight: number;
}

/** A member prepared for scoring: its id hashed once. */
export interface Candidate<M extends HashMember = HashMember> {
  readonly member: M;
  readonly h1: number;
  readonly h2: number;
  readonly weight: number;
  /** All candidates in a set have weight 1: scoring can skip the logarithm. */
  readonly unweighted: boolean;
}

/** A key hashed once, for scoring against many members. */
export interface KeyHash {
  readonly h1: number;
  readonly h2: number;
}

const seed1 = 0x9747b28c;
const seed2 = 0x5bd1e995;
const twoTo21 = 2_097_152;
const twoTo53 = 9_007_199_254_740_992;

function fmix32(value: number): number {
  let h = value;
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return h >>> 0;
}

/** murmur3_32 over UTF-16 code units (two per 32-bit block), so no encoding step is needed. */
function hashText(text: string, seed: number): number {
  let h = seed;
  const length = text.length;
  let i = 0;
  for (; i + 1 < length; i += 2) {
    let k = (text.charCodeAt(i) | (text.charCodeAt(i + 1) << 16)) >>> 0;
    k = Math.imul(k, 0xcc9e2d51);
    k = (k << 15) | (k >>> 17);
    k = Math.imul(k, 0x1b873593);
    h ^= k;
    h = (h << 13) | (h >>> 19);
    h = (Math.imul(h, 5) + 0xe6546b64) | 0;
  }
  if (i < length) {
    let k = text.charCodeAt(i);
    k = Math.imul(k, 0xcc9e2d51);
    k = (k << 15) | (k >>> 17);
    k = Math.imul(k, 0x1b873593);
    h ^= k;
  }
  h ^= length;
  return fmix32(h);
}

export function hashKey(key: string): KeyHash {
  return { h1: hashText(key, seed1), h2: hashText(key, seed2) };
}

/** A uniform number in (0, 1) for the pair: 53 bits, never 0 or 1. */
export function pairUnit(key: KeyHash, member: { readonly h1: number; readonly h2: number }): number {
  const a = fmix32(key.h1 ^ member.h1);
  const b = fmix32(key.h2 ^ member.h2 ^ Math.imul(a, 0x9e3779b1));
  const c = fmix32(a ^ Math.imul(b, 0x85ebca6b));
  return (c * twoTo21 + (b >>> 11) + 0.5) / twoTo53;
}

/** The weighted HRW score: higher wins. */
export function score(unit: number, weight: number): number {
  return -weight / Math.log(unit);
}

export function checkWeight(weight: number): number {
  if (!(Number.isFinite(weight) && weight > 0))
    throw new RangeError(`weight must be a number above 0, got ${weight}`);
  return weight;
}

export function candidate<M extends HashMember>(member: M, unweighted = member.weight === 1): Candidate<M> {
  return {
    member,
    h1: hashText(member.id, seed1 ^ 0x68e31da4),
    h2: hashText(member.id, seed2 ^ 0x1b56c4e9),
    weight: checkWeight(member.weight),
    unweighted,
  };
}

/** Candidates for a set of members, sorted by id (the tie-break order), flagged unweighted when all weigh 1. */
export function candidates<M extends HashMember>(members: Iterable<M>): Candidate<M>[] {
  const list = [...members];
  const unweighted = list.every((m) => m.weight === 1);
  return list
    .map((m) => candidate(m, unweighted))
    .sort((x, y) => (x.member.id < y.member.id ? -1 : x.member.id > y.member.id ? 1 : 0));
}

/** A candidate's score for a key: comparable only within one candidate set. */
export function scoreOf(key: KeyHash, c: Candidate): number {
  const unit = pairUnit(key, c);
  return c.unweighted ? unit : score(unit, c.weight);
}

/** The winner among `set` for `key`, with its score; undefined when the set is empty. Ties go to the lower id. */
export function rendezvous<M extends HashMember>(
  key: KeyHash | string,
  set: readonly Candidate<M>[],
): { member: M; score: number } | undefined {
  const hashed = typeof key === "string" ? hashKey(key) : key;
  let best: Candidate<M> | undefined;
  let bestScore = Number.NEGATIVE_INFINITY;
  for (const c of set) {
    const s = scoreOf(hashed, c);
    if (s > bestScore) {
      best = c;
      bestScore = s;
    }
  }
  return best === undefined ? undefined : { member: best.member, score: bestScore };
}

/**
 * The owner of a key: its claim holder while that member is eligible, else the rendezvous winner among
 * the eligible members. `eligible` is the candidate set of members that are ready and not draining.
 */
export function ownerOf<M extends HashMember>(
  key: string,
  eligible: readonly Candidate<M>[],
  claimHolder?: string,
): M | undefined {
  if (claimHolder !== undefined) {
    const held = eligible.find((c) => c.member.id === claimHolder);
    if (held !== undefined) return held.member;
  }
  return rendezvous(key, eligible)?.member;
}
