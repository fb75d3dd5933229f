/**
 * Ownership: how many keys move when a member joins or leaves, against the K/N bound of rendezvous
 * hashing, and how fast an actor host resolves owners locally, against a plain `Map` lookup, in one run.
 *
 *   (1) Moves. An `OwnershipDirectory` (the controller's, in memory) with K keys over N equal members
 *       (N = 3, 10, 50): a member joins, one leaves (down), one is drained, and a member of weight 2
 *       joins. For each: keys that changed owner, the ideal share (K/(N+1) for a join, the leaver's
 *       keys ≈ K/N for a leave), their ratio, and how many moved keys did not involve the changed
 *       member at all (rendezvous hashing says: none).
 *   (2) Resolves. A real controller in this process (temp data dir, loopback bridge) with N members and
 *       K registered keys; an `OwnershipClient` (corral/ownership) connects, takes its snapshot, and
 *       `client.owner(key)` is timed against `Map.get(key)` on a map of the same keys to their owner's
 *       host (what an actor host would keep if it cached every answer), in alternating slices; the ratio
 *       is the median of per-round ratios. ResolveOwner over the bridge (one RPC per lookup) is shown
 *       for scale.
 *
 *   npm run bench:ownership [-- --quick] [-- --keys 100000]
 *
 * Results also go to .bench-out/ownership.json. Exits non-zero if a check fails (a key moved that
 * involved neither side, or the client disagreed with the controller).
 */

import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import os from "node:os";
import { join } from "node:path";
import { performance } from "node:perf_hooks";
import { parseArgs } from "node:util";
import { createClient } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import { OwnershipClient } from "../../src/client/ownership-client.ts";
import { resolveControllerConfig } from "../../src/controller/config.ts";
import { Controller } from "../../src/controller/controller.ts";
import { type DirectoryMember, OwnershipDirectory } from "../../src/core/ownership/ownership-directory.ts";
import { MembersService } from "../../src/gen/corral/v1/members_pb.ts";
import { createLogger } from "../../src/observability/logger.ts";

const { values: options } = parseArgs({
  options: {
    quick: { type: "boolean", default: false },
    keys: { type: "string" },
  },
  strict: true,
});
const quick = options.quick === true;
const keyCount = Number(options.keys ?? (quick ? 20_000 : 100_000));
if (!Number.isInteger(keyCount) || keyCount < 1_000 || keyCount > 1_000_000) {
  console.error(`--keys must be a whole number from 1000 to 1000000, got ${options.keys}`);
  process.exit(2);
}
const memberCounts = [3, 10, 50];
const timing = quick ? { rounds: 3, sliceMs: 300 } : { rounds: 7, sliceMs: 1_000 };
const failures: string[] = [];

function median(values: readonly number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const middle = sorted.length >> 1;
  return sorted.length % 2 === 1
    ? (sorted[middle] as number)
    : ((sorted[middle - 1] as number) + (sorted[middle] as number)) / 2;
}

const fmt = (value: number, digits = 0) =>
  value.toLocaleString("en-US", { minimumFractionDigits: digits, maximumFractionDigits: digits });

const keys = Array.from({ length: keyCount }, (_, i) => `cart-${(i * 2_654_435_761) % 4_294_967_296}-${i}`);

// ---------------------------------------------------------------------------- (1) moves

interface MoveRow {
  members: number;
  change: string;
  moved: number;
  ideal: number;
  ratio: number;
  /** Keys that moved between two members neither of which was the one that changed: must be 0. */
  stray: number;
  ms: number;
}

function member(i: number, weight = 1): DirectoryMember {
  return { id: `node-${i}`, name: `m${i}`, host: `10.0.${i >> 8}.${i & 255}:7444`, status: "ready", weight };
}

function directoryWith(n: number): OwnershipDirectory {
  const directory = new OwnershipDirectory();
  for (let i = 0; i < n; i++) directory.upsertMember(member(i));
  for (const key of keys) directory.setKey(key, undefined);
  return directory;
}

function measureMove(
  n: number,
  change: string,
  changed: string,
  ideal: number,
  apply: (directory: OwnershipDirectory) => number,
): MoveRow {
  const directory = directoryWith(n);
  const before = directory.owners();
  const started = performance.now();
  const moved = apply(directory);
  const ms = performance.now() - started;
  const after = directory.owners();
  let stray = 0;
  let counted = 0;
  for (const [key, owner] of before) {
    const now = after.get(key);
    if (now === owner) continue;
    counted++;
    if (owner !== changed && now !== changed) stray++;
  }
  if (counted !== moved) failures.push(`${change} with ${n}: answered ${moved} moved, counted ${counted}`);
  if (stray > 0) failures.push(`${change} with ${n}: ${stray} keys moved between unchanged members`);
  return { members: n, change, moved, ideal, ratio: moved / ideal, stray, ms };
}

const moves: MoveRow[] = [];
for (const n of memberCounts) {
  moves.push(measureMove(n, "join", `node-${n}`, keyCount / (n + 1), (d) => d.upsertMember(member(n))));
  moves.push(
    measureMove(n, "leave (down)", "node-0", keyCount / n, (d) =>
      d.upsertMember({ ...member(0), status: "down" }),
    ),
  );
  moves.push(
    measureMove(n, "drain", "node-1", keyCount / n, (d) =>
      d.upsertMember({ ...member(1), draining: { reason: "operator", since: 0 } }),
    ),
  );
  moves.push(
    measureMove(n, "join, weight 2", `node-${n}`, (keyCount * 2) / (n + 2), (d) =>
      d.upsertMember(member(n, 2)),
    ),
  );
}

console.log(
  `\n(1) keys moved, K = ${fmt(keyCount)} keys (ideal: K/(N+1) for a join, K/N for a leave, K·w/Σw weighted)`,
);
console.log(
  `${"members".padStart(7)}  ${"change".padEnd(15)} ${"moved".padStart(9)} ${"ideal".padStart(9)} ${"moved/ideal".padStart(11)} ${"stray".padStart(6)} ${"apply ms".padStart(9)}`,
);
for (const row of moves) {
  console.log(
    `${String(row.members).padStart(7)}  ${row.change.padEnd(15)} ${fmt(row.moved).padStart(9)} ${fmt(row.ideal).padStart(9)} ${row.ratio.toFixed(3).padStart(11)} ${String(row.stray).padStart(6)} ${row.ms.toFixed(1).padStart(9)}`,
  );
}

// ---------------------------------------------------------------------------- (2) resolves

interface ResolveRow {
  members: number;
  clientPerSecond: number;
  mapPerSecond: number;
  /** Median over rounds of (client resolves/s ÷ Map lookups/s). */
  ratio: number;
  rpcPerSecond: number;
  agreed: number;
}

/** Runs `work(i)` for about `ms`, in chunks; answers calls per second. */
function slice(ms: number, work: (i: number) => unknown): number {
  let calls = 0;
  let sink = 0;
  const started = performance.now();
  let elapsed = 0;
  while (elapsed < ms) {
    for (let j = 0; j < 4_096; j++) {
      if (work(calls++ % keyCount) !== undefined) sink++;
    }
    elapsed = performance.now() - started;
  }
  if (sink < 0) console.log(sink);
  return (calls / elapsed) * 1_000;
}

async function resolves(n: number): Promise<ResolveRow> {
  const dir = mkdtempSync(join(os.tmpdir(), "corral-bench-ownership-"));
  const config = resolveControllerConfig(
    {
      node: { name: "Bench Controller" },
      http: { address: "127.0.0.1:0" },
      grpcBridge: { address: "127.0.0.1:0" },
      web: { address: "127.0.0.1:0" },
      // Nobody heartbeats for the registered members: keep them ready for the whole run.
      liveness: { minInterval: "1h" },
      shutdownGrace: "1s",
    },
    dir,
    { dataDir: dir },
    "bench",
  );
  const controller = await Controller.start(config, createLogger({ level: "warn" }));
  try {
    for (let i = 1; i < n; i++) {
      await controller.context.registry.register({
        id: `bench-node-${i}`,
        name: `bench-${i}`,
        address: "127.0.0.1",
        port: 20_000 + i,
        status: "ready",
      });
    }
    const members = createClient(
      MembersService,
      createGrpcTransport({ baseUrl: `http://${controller.addresses.bridge}` }),
    );
    for (let i = 0; i < keys.length; i += 10_000)
      await members.registerKeys({ keys: keys.slice(i, i + 10_000) });
    await using client = await OwnershipClient.connect({
      address: controller.addresses.bridge,
      syncTimeoutMs: 30_000,
    });
    if (client.eligibleHosts().length !== n)
      failures.push(`resolves with ${n}: client sees ${client.eligibleHosts().length} members`);

    // The Map an actor host would fill by asking for every key once.
    const cache = new Map<string, string>();
    for (const key of keys) cache.set(key, client.owner(key)?.host ?? "");
    let agreed = 0;
    const sample = keys.filter((_, i) => i % Math.max(1, Math.floor(keyCount / 300)) === 0);
    const rpcStarted = performance.now();
    for (const key of sample) {
      const remote = await members.resolveOwner({ key });
      if (remote.owner?.host === client.owner(key)?.host) agreed++;
      else
        failures.push(
          `resolves with ${n}: client says ${client.owner(key)?.host} for ${key}, controller ${remote.owner?.host}`,
        );
    }
    const rpcPerSecond = (sample.length / (performance.now() - rpcStarted)) * 1_000;

    slice(200, (i) => client.owner(keys[i] as string));
    slice(200, (i) => cache.get(keys[i] as string));
    const clientRates: number[] = [];
    const mapRates: number[] = [];
    const ratios: number[] = [];
    for (let round = 0; round < timing.rounds; round++) {
      const c = slice(timing.sliceMs, (i) => client.owner(keys[i] as string));
      const m = slice(timing.sliceMs, (i) => cache.get(keys[i] as string));
      clientRates.push(c);
      mapRates.push(m);
      ratios.push(c / m);
    }
    return {
      members: n,
      clientPerSecond: median(clientRates),
      mapPerSecond: median(mapRates),
      ratio: median(ratios),
      rpcPerSecond,
      agreed,
    };
  } finally {
    await controller.close();
    rmSync(dir, { recursive: true, force: true });
  }
}

const resolveRows: ResolveRow[] = [];
for (const n of memberCounts) resolveRows.push(await resolves(n));

console.log(
  `\n(2) owner lookups per second, K = ${fmt(keyCount)} keys (medians of ${timing.rounds} alternating slices of ${timing.sliceMs} ms)`,
);
console.log(
  `${"members".padStart(7)}  ${"client.owner()/s".padStart(17)} ${"Map.get()/s".padStart(14)} ${"client/Map".padStart(10)} ${"ResolveOwner RPC/s".padStart(19)} ${"agreed".padStart(8)}`,
);
for (const row of resolveRows) {
  console.log(
    `${String(row.members).padStart(7)}  ${fmt(row.clientPerSecond).padStart(17)} ${fmt(row.mapPerSecond).padStart(14)} ${row.ratio.toFixed(3).padStart(10)} ${fmt(row.rpcPerSecond).padStart(19)} ${String(row.agreed).padStart(8)}`,
  );
}

const out = new URL("../../.bench-out/", import.meta.url);
mkdirSync(out, { recursive: true });
writeFileSync(
  new URL("ownership.json", out),
  `${JSON.stringify({ keyCount, quick, moves, resolves: resolveRows, failures, cpus: os.cpus().length, node: process.version }, null, 2)}\n`,
);
if (failures.length > 0) {
  console.error(`\n${failures.length} check(s) failed:\n${failures.slice(0, 20).join("\n")}`);
  process.exit(1);
}
console.log("\nresults in .bench-out/ownership.json");
