import assert from "node:assert/strict";
import { describe, it } from "node:test";
import type { NodeStatus } from "../../src/core/nodes/node.ts";
import {
  type DirectoryMember,
  isEligible,
  OwnershipDirectory,
} from "../../src/core/ownership/ownership-directory.ts";
import {
  candidate,
  candidates,
  hashKey,
  pairUnit,
  rendezvous,
} from "../../src/core/ownership/ownership-hash.ts";

/**
 * Property tests of the placement: many random clusters and random sequences of changes, each checked
 * against a from-scratch reference written independently here (the textbook weighted HRW score,
 * -w / ln(u), for every member, no shortcuts). Seeded, so a failure names the seed that reproduces it.
 */

/** mulberry32: small, seeded, good enough to drive tests. */
function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4_294_967_296;
  };
}

const pick = <T>(random: () => number, items: readonly T[]): T =>
  items[Math.floor(random() * items.length)] as T;
const statuses: NodeStatus[] = ["ready", "ready", "ready", "suspect", "down"];

function randomMember(random: () => number, i: number, weighted: boolean): DirectoryMember {
  return {
    id: `node-${i}-${Math.floor(random() * 1e9).toString(36)}`,
    name: `member-${i}`,
    host: `10.0.${Math.floor(i / 250)}.${i % 250}:7444`,
    status: pick(random, statuses),
    weight: weighted ? pick(random, [0.5, 1, 1, 2, 3]) : 1,
    ...(random() < 0.1 ? { draining: { reason: "operator" as const, since: 0 } } : {}),
  };
}

function randomKey(random: () => number): string {
  const kinds = [
    () => `cart-${Math.floor(random() * 1e12)}`,
    () => String(Math.floor(random() * 1e6)),
    () => `actor/${Math.floor(random() * 1e9).toString(16)}/grain-ø-${Math.floor(random() * 100)}`,
    () => `${Math.floor(random() * 1e15).toString(36)}🛒`,
  ];
  return pick(random, kinds)();
}

/** The owner from scratch: an eligible claim holder, else the best -w/ln(u) among eligible members. */
function referenceOwner(
  key: string,
  members: readonly DirectoryMember[],
  claim: string | undefined,
): string | undefined {
  const eligible = members.filter(isEligible);
  if (claim !== undefined && eligible.some((m) => m.id === claim)) return claim;
  const hash = hashKey(key);
  let best: DirectoryMember | undefined;
  let bestScore = Number.NEGATIVE_INFINITY;
  for (const member of [...eligible].sort((a, b) => (a.id < b.id ? -1 : 1))) {
    const s = -member.weight / Math.log(pairUnit(hash, candidate(member)));
    if (s > bestScore) {
      best = member;
      bestScore = s;
    }
  }
  return best?.id;
}

interface Model {
  members: Map<string, DirectoryMember>;
  claims: Map<string, string | undefined>;
}

/** Checks the directory against the model: owners, the per-member key lists, the unowned count. */
function checkAgainstModel(directory: OwnershipDirectory, model: Model, label: string): void {
  const members = [...model.members.values()];
  const eligibleIds = new Set(members.filter(isEligible).map((m) => m.id));
  const listed = new Map<string, string>();
  for (const member of members) {
    for (const key of directory.keysOf(member.id)) {
      assert.ok(!listed.has(key), `${label}: ${key} is listed under two members`);
      listed.set(key, member.id);
    }
  }
  let unowned = 0;
  for (const [key, claim] of model.claims) {
    const expected = referenceOwner(key, members, claim);
    const answer = directory.owner(key);
    assert.equal(answer.owner?.id, expected, `${label}: owner of ${key}`);
    assert.equal(listed.get(key), expected, `${label}: ${key} listed under its owner`);
    if (expected === undefined) unowned++;
    else assert.ok(eligibleIds.has(expected), `${label}: ${key} owned by an eligible member`);
  }
  assert.equal(listed.size + unowned, model.claims.size, `${label}: every key listed once or unowned`);
  assert.equal(directory.unownedCount, unowned, `${label}: unowned count`);
  assert.equal(directory.size, model.claims.size);
}

describe("rendezvous hashing", () => {
  it("is deterministic and spreads keys evenly over equal members (chi-square)", () => {
    const members = Array.from({ length: 8 }, (_, i) => ({ id: `m${i}`, weight: 1 }));
    const set = candidates(members);
    const counts = new Map<string, number>();
    const n = 40_000;
    for (let i = 0; i < n; i++) {
      const winner = rendezvous(`cart-${i}`, set)?.member.id ?? "";
      assert.equal(rendezvous(`cart-${i}`, set)?.member.id, winner);
      counts.set(winner, (counts.get(winner) ?? 0) + 1);
    }
    const expected = n / members.length;
    const chi = [...counts.values()].reduce((sum, c) => sum + (c - expected) ** 2 / expected, 0);
    // 7 degrees of freedom: P(chi² > 24.3) ≈ 0.001.
    assert.ok(chi < 24.3, `chi² ${chi.toFixed(1)} over ${JSON.stringify([...counts])}`);
  });

  it("respects weights within tolerance", () => {
    for (const weights of [
      [1, 2, 3, 4],
      [1, 1, 1, 5],
      [0.5, 1, 2],
      [10, 1],
    ]) {
      const set = candidates(weights.map((weight, i) => ({ id: `w${i}`, weight })));
      const n = 60_000;
      const counts = new Array<number>(weights.length).fill(0);
      for (let i = 0; i < n; i++) {
        const id = rendezvous(`key:${i}`, set)?.member.id ?? "";
        const index = Number(id.slice(1));
        counts[index] = (counts[index] ?? 0) + 1;
      }
      const total = weights.reduce((a, b) => a + b, 0);
      weights.forEach((weight, i) => {
        const share = (counts[i] ?? 0) / n;
        const expected = weight / total;
        // Five standard deviations of a binomial share at n = 60 000 is below 0.011.
        assert.ok(
          Math.abs(share - expected) < 0.011,
          `weights ${weights}: member ${i} got ${(share * 100).toFixed(2)}%, expected ${(expected * 100).toFixed(2)}%`,
        );
      });
    }
  });

  it("hashes every string, including empty and non-BMP ones, into (0, 1)", () => {
    const member = candidates([{ id: "x", weight: 1 }])[0];
    assert.ok(member !== undefined);
    for (const key of ["", "a", "ab", "abc", "🛒", "ø".repeat(1000), "\u{10FFFF}"]) {
      const u = pairUnit(hashKey(key), member);
      assert.ok(u > 0 && u < 1, `${JSON.stringify(key)} → ${u}`);
    }
    assert.notEqual(pairUnit(hashKey("ab"), member), pairUnit(hashKey("ba"), member));
  });
});

describe("the ownership directory (property tests)", () => {
  it("gives every key exactly one owner among eligible members, equal to a from-scratch computation", () => {
    for (let seed = 1; seed <= 60; seed++) {
      const random = prng(seed);
      const directory = new OwnershipDirectory();
      const model: Model = { members: new Map(), claims: new Map() };
      const memberCount = 1 + Math.floor(random() * 20);
      const weighted = seed % 3 === 0;
      for (let i = 0; i < memberCount; i++) {
        const member = randomMember(random, i, weighted);
        model.members.set(member.id, member);
        directory.upsertMember(member);
      }
      const ids = [...model.members.keys()];
      const keyCount = 200 + Math.floor(random() * 800);
      for (let i = 0; i < keyCount; i++) {
        const key = randomKey(random);
        const claim = random() < 0.1 ? pick(random, ids) : undefined;
        model.claims.set(key, claim);
        directory.setKey(key, claim);
      }
      checkAgainstModel(directory, model, `seed ${seed}`);
    }
  });

  it("moves only the leaving member's keys when one goes down, drains or is removed", () => {
    for (let seed = 100; seed < 140; seed++) {
      const random = prng(seed);
      const directory = new OwnershipDirectory();
      const members = Array.from({ length: 2 + Math.floor(random() * 12) }, (_, i) => ({
        ...randomMember(random, i, seed % 2 === 0),
        status: "ready" as const,
      }));
      const ready = members.map(({ draining: _d, ...m }) => m);
      for (const member of ready) directory.upsertMember(member);
      for (let i = 0; i < 2_000; i++)
        directory.setKey(`k${seed}-${i}`, random() < 0.05 ? pick(random, ready).id : undefined);
      const before = directory.owners();
      const leaving = pick(random, ready);
      const how = pick(random, ["down", "drain", "remove"] as const);
      const moved =
        how === "remove"
          ? directory.removeMember(leaving.id)
          : directory.upsertMember(
              how === "down"
                ? { ...leaving, status: "down" }
                : { ...leaving, draining: { reason: "closing", since: 1 } },
            );
      const after = directory.owners();
      let changed = 0;
      for (const [key, owner] of before) {
        if (after.get(key) === owner) continue;
        changed++;
        assert.equal(
          owner,
          leaving.id,
          `seed ${seed} (${how}): ${key} moved from ${owner}, not the leaving member`,
        );
        assert.notEqual(after.get(key), leaving.id);
      }
      assert.equal(moved, changed, `seed ${seed}: the count answered is the count that moved`);
      assert.equal(changed, before.size - [...before.values()].filter((o) => o !== leaving.id).length);
      assert.equal(directory.keyCountOf(leaving.id), 0);
    }
  });

  it("moves only keys to a member that joins, about K/N of them", () => {
    for (let seed = 200; seed < 230; seed++) {
      const random = prng(seed);
      const directory = new OwnershipDirectory();
      const n = 2 + Math.floor(random() * 10);
      for (let i = 0; i < n; i++) {
        const { draining: _d, ...member } = randomMember(random, i, false);
        directory.upsertMember({ ...member, status: "ready" });
      }
      const k = 5_000;
      for (let i = 0; i < k; i++) directory.setKey(`cart-${seed}-${i}`, undefined);
      const before = directory.owners();
      const joining: DirectoryMember = {
        id: `joiner-${seed}`,
        name: "joiner",
        host: "10.9.9.9:1",
        status: "ready",
        weight: 1,
      };
      const moved = directory.upsertMember(joining);
      const after = directory.owners();
      for (const [key, owner] of after) {
        if (before.get(key) !== owner)
          assert.equal(owner, joining.id, `seed ${seed}: ${key} moved, but not to the joiner`);
      }
      const eligible = directory.eligibleMembers().length;
      const bound = k / eligible;
      assert.ok(
        moved <= bound * 1.15 && moved >= bound * 0.85,
        `seed ${seed}: ${moved} moved, K/N = ${bound.toFixed(0)}`,
      );
    }
  });

  it("stays equal to a from-scratch computation through random sequences of changes", () => {
    for (let seed = 300; seed < 325; seed++) {
      const random = prng(seed);
      const directory = new OwnershipDirectory();
      const model: Model = { members: new Map(), claims: new Map() };
      let next = 0;
      for (let step = 0; step < 120; step++) {
        const ids = [...model.members.keys()];
        const keys = [...model.claims.keys()];
        const action = random();
        if (action < 0.2 || ids.length === 0) {
          const member = randomMember(random, next++, seed % 2 === 0);
          model.members.set(member.id, member);
          directory.upsertMember(member);
        } else if (action < 0.35) {
          const id = pick(random, ids);
          const current = model.members.get(id) as DirectoryMember;
          const { draining: _d, ...rest } = current;
          const changed: DirectoryMember =
            random() < 0.5
              ? {
                  ...rest,
                  status: pick(random, statuses),
                  ...(random() < 0.3 ? { draining: { reason: "closing" as const, since: step } } : {}),
                }
              : { ...current, weight: pick(random, seed % 2 === 0 ? [0.5, 1, 2, 4] : [1]) };
          model.members.set(id, changed);
          directory.upsertMember(changed);
        } else if (action < 0.42) {
          const id = pick(random, ids);
          model.members.delete(id);
          directory.removeMember(id);
        } else if (action < 0.85) {
          for (let i = 0; i < 20; i++) {
            const key = randomKey(random);
            const claim = random() < 0.15 && ids.length > 0 ? pick(random, ids) : undefined;
            model.claims.set(key, claim);
            directory.setKey(key, claim);
          }
        } else if (action < 0.95 && keys.length > 0) {
          const key = pick(random, keys);
          const claim = random() < 0.5 ? undefined : pick(random, ids);
          model.claims.set(key, claim);
          directory.setKey(key, claim);
        } else if (keys.length > 0) {
          const key = pick(random, keys);
          model.claims.delete(key);
          assert.equal(directory.deleteKey(key), true);
        }
        checkAgainstModel(directory, model, `seed ${seed} step ${step}`);
      }
    }
  });

  it("finds members by host, id and unambiguous name, and reports load against the fair share", () => {
    const directory = new OwnershipDirectory();
    const a: DirectoryMember = { id: "a", name: "alpha", host: "10.0.0.1:1", status: "ready", weight: 1 };
    const b: DirectoryMember = { id: "b", name: "beta", host: "10.0.0.2:1", status: "ready", weight: 3 };
    directory.upsertMember(a);
    directory.upsertMember(b);
    for (let i = 0; i < 8_000; i++) directory.setKey(`k${i}`, undefined);
    assert.equal(directory.find("10.0.0.1:1")?.id, "a");
    assert.equal(directory.find("b")?.id, "b");
    assert.equal(directory.find("beta")?.id, "b");
    assert.equal(directory.find("gamma"), undefined);
    const views = directory.views();
    const total = views.reduce((sum, v) => sum + v.keyCount, 0);
    assert.equal(total, 8_000);
    for (const view of views) assert.ok(Math.abs(view.load - 1) < 0.06, `${view.id} load ${view.load}`);
    // Moving a member's host keeps its keys (placement hashes the node id).
    const moved = directory.upsertMember({ ...a, host: "10.0.0.9:2" });
    assert.equal(moved, 0);
    assert.equal(directory.find("10.0.0.9:2")?.id, "a");
    assert.equal(directory.memberByHost("10.0.0.1:1"), undefined);
  });
});
