/**
 * Heartbeats at scale on etcd, and failover time, in one run against one real etcd (started here in a
 * temp dir on loopback ports, as the tests do):
 *
 *   (a) baseline: one etcd3 client writing one key per heartbeat in a loop (the next put as soon as the
 *       last is answered) — what liveness would cost if every heartbeat were an etcd write
 *   (b) corral: a controller on the etcd store (child process); N agents (--agents, default 50) join it
 *       for real and heartbeat over mTLS as corral's agent does — messages on one HeartbeatStream each,
 *       one heartbeat in flight (bench/heartbeat/agents.ts). Heartbeats land in memory; the controller
 *       publishes the last-seen times it heard as one batched etcd write per `store.etcd.lastSeenFlush`
 *       (1 s); the caller's node and the revocation list come from a watched mirror, and are checked
 *       again on every message. etcd's own /metrics count the calls it answered meanwhile.
 *   (b') the same agents heartbeating with a unary call each (AgentService/Heartbeat, as older agents
 *       and the first heartbeat after a failover do): the RPC stack's cost per call dominates.
 *   (d) the same controller on SQLite, streams: what the RPC stack alone allows on this machine, so
 *       that (b) ≈ (d) shows etcd costs a heartbeat nothing.
 *   (c) the liveness layer alone, in this process: Membership.heartbeat for N nodes registered in etcd,
 *       with the LastSeenBatcher publishing to etcd, awaited one after another.
 *
 * (a), (b), (b') and (d) are measured in turns, 1 s slices, 4 rounds (--quick: 2), so a burst of load from
 * elsewhere on this noisy machine hits them alike; ratios are medians of the per-round ratios. The goal
 * for heartbeats ingested with the etcd store against (a) is ≥ 5×.
 *
 * Failover: two more controllers join the same etcd; the leader is SIGKILLed and the time until another
 * controller reports that it leads (ClusterService/GetClusterStatus on its bridge, polled every 20 ms)
 * is taken; a fresh controller replaces the dead one; 3 rounds (--quick: 1). leaseTtl is 2 s (--ttl):
 * a new leader takes about one TTL, as etcd only frees the dead leader's key when its lease expires.
 *
 *   npm run bench:etcd-heartbeat [-- --quick] [-- --agents 200] [-- --ttl 2s]
 *
 * Results also go to .bench-out/etcd-heartbeat.json. The whole run is bounded (a timer ends it).
 */

import { mkdirSync, mkdtempSync, writeFileSync } from "node:fs";
import os from "node:os";
import { join } from "node:path";
import { performance } from "node:perf_hooks";
import { parseArgs } from "node:util";
import { createClient } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import { Etcd3 } from "etcd3";
import { systemClock } from "../../src/base/clock.ts";
import { parseDuration } from "../../src/base/duration.ts";
import { ControllerRegistry } from "../../src/controller/controller-registry.ts";
import { EventFeed } from "../../src/core/events/event-feed.ts";
import { NodeRegistry } from "../../src/core/nodes/node-registry.ts";
import { LastSeenBatcher } from "../../src/engines/last-seen-batcher.ts";
import { Membership } from "../../src/engines/membership.ts";
import { ClusterService } from "../../src/gen/corral/v1/cluster_pb.ts";
import { createLogger } from "../../src/observability/logger.ts";
import { writeSealingKey } from "../../src/security/ca-key-file.ts";
import { EtcdStore } from "../../src/store/etcd/etcd-store.ts";
import { startTestEtcd, type TestEtcd } from "../../test/helpers/etcd.ts";
import {
  connect,
  type HeartbeatMode,
  joinCluster,
  mapLimit,
  runSlice,
  type Slice,
} from "../heartbeat/agents.ts";
import { removeOnExit, type ServerChild, startChild } from "../heartbeat/children.ts";

const { values: options } = parseArgs({
  options: {
    quick: { type: "boolean", default: false },
    agents: { type: "string", default: "50" },
    ttl: { type: "string", default: "2s" },
  },
  strict: true,
});
const quick = options.quick === true;
const agentCount = Number(options.agents);
if (!Number.isInteger(agentCount) || agentCount < 1 || agentCount > 2_000) {
  console.error(`--agents must be a whole number from 1 to 2000, got ${options.agents}`);
  process.exit(2);
}
const ttl = options.ttl ?? "2s";
const ttlMs = parseDuration(ttl, "--ttl");
const rounds = quick ? 2 : 4;
const failoverRounds = quick ? 1 : 3;
const sliceMs = 1_000;
const runLimitMs = 240_000 + agentCount * 100;

const limit = setTimeout(() => {
  console.error(`the bench ran past ${runLimitMs / 1000} s and was stopped`);
  process.exit(1);
}, runLimitMs);
limit.unref();

const median = (values: readonly number[]): number => {
  const sorted = [...values].sort((x, y) => x - y);
  const middle = sorted.length >> 1;
  return sorted.length % 2 === 1
    ? (sorted[middle] as number)
    : ((sorted[middle - 1] as number) + (sorted[middle] as number)) / 2;
};
const fmt = (value: number, digits = 0) =>
  value.toLocaleString("en-US", { minimumFractionDigits: digits, maximumFractionDigits: digits });

/** (a): one client, one put per "heartbeat", the next as soon as the last is answered. */
async function putLoop(
  client: Etcd3,
  ms: number,
  nodes: number,
): Promise<{ count: number; seconds: number }> {
  const started = performance.now();
  let count = 0;
  while (performance.now() - started < ms) {
    await client.put(`/bench-baseline/last-seen/node-${count % nodes}`).value(String(Date.now()));
    count++;
  }
  return { count, seconds: (performance.now() - started) / 1000 };
}

/** etcd's own count of the gRPC calls it answered, by method (from its /metrics). */
async function etcdCalls(endpoint: string): Promise<Map<string, number>> {
  const text = await (await fetch(`${endpoint}/metrics`)).text();
  const calls = new Map<string, number>();
  for (const match of text.matchAll(/^grpc_server_handled_total\{([^}]*)\} (\S+)$/gm)) {
    const method = /grpc_method="([^"]+)"/.exec(match[1] ?? "")?.[1] ?? "?";
    if (/grpc_type="unary"/.test(match[1] ?? ""))
      calls.set(method, (calls.get(method) ?? 0) + Number(match[2]));
  }
  return calls;
}

/** (c): the liveness layer on etcd, without RPCs: heartbeats in a loop for `ms`, batches published. */
async function livenessLayer(etcd: TestEtcd, nodes: number, ms: number) {
  const logger = createLogger({ level: "warn" });
  const store = await EtcdStore.open({ endpoints: [etcd.endpoint], prefix: "/bench-liveness" });
  const registry = new NodeRegistry(store, systemClock);
  const ids: string[] = [];
  for (let i = 0; i < nodes; i++)
    ids.push((await registry.register({ name: `liveness-${i}`, status: "ready" })).id);
  const membership = new Membership({
    registry,
    feed: new EventFeed(store),
    clock: systemClock,
    logger,
    controllerNodeId: "bench-controller",
  });
  await membership.start();
  const controllers = await ControllerRegistry.start({
    client: store.client,
    prefix: "/bench-liveness",
    ttlSeconds: 10,
    logger,
    info: { name: "bench", clusterAddress: "127.0.0.1:1", version: "bench", startedAt: Date.now() },
  });
  const batcher = new LastSeenBatcher({ registry: controllers, membership, everyMs: 1_000, logger });
  try {
    const before = await store.revision();
    const started = performance.now();
    let count = 0;
    while (performance.now() - started < ms) {
      await membership.heartbeat(ids[count % nodes] as string);
      count++;
    }
    const seconds = (performance.now() - started) / 1000;
    await batcher.flush();
    return { rate: count / seconds, count, writes: (await store.revision()) - before };
  } finally {
    await batcher.close();
    await controllers.close();
    await membership.close();
    await store.close();
  }
}

async function etcdRevision(client: Etcd3): Promise<number> {
  const response = await client.kv.range({ key: Buffer.from("/"), keys_only: true, limit: 1 });
  return Number(response.header.revision);
}

interface ControllerChild {
  readonly name: string;
  readonly child: ServerChild;
  readonly ready: Record<string, string>;
}

async function startController(
  root: string,
  name: string,
  etcd: TestEtcd,
  keyFile: string,
  uses: number,
): Promise<ControllerChild> {
  const dataDir = join(root, name);
  mkdirSync(dataDir, { recursive: true });
  const child = await startChild(
    new URL("./controller-server.ts", import.meta.url),
    [dataDir, name, etcd.endpoint, keyFile, ttl, String(uses)],
    join(root, `${name}.log`),
  );
  return { name, child, ready: child.ready as Record<string, string> };
}

function statusOf(controller: ControllerChild) {
  const transport = createGrpcTransport({ baseUrl: `http://${controller.ready.bridge}` });
  return createClient(ClusterService, transport).getClusterStatus({}, { timeoutMs: 1_000 });
}

async function leaderAmong(controllers: readonly ControllerChild[]): Promise<ControllerChild | undefined> {
  for (const c of controllers) {
    const status = await statusOf(c).catch(() => undefined);
    if (status?.isLeader) return c;
  }
  return undefined;
}

async function waitFor<T>(what: string, withinMs: number, probe: () => Promise<T | undefined>): Promise<T> {
  const deadline = performance.now() + withinMs;
  for (;;) {
    const value = await probe();
    if (value !== undefined) return value;
    if (performance.now() > deadline) throw new Error(`${what}: not within ${withinMs} ms`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

async function main(): Promise<void> {
  const root = mkdtempSync(join(os.tmpdir(), "corral-etcd-bench-"));
  removeOnExit(root);
  const etcd = await startTestEtcd();
  const raw = new Etcd3({ hosts: etcd.endpoint });
  try {
    const keyFile = join(root, "ca.key");
    await writeSealingKey(keyFile);
    const version = (await raw.maintenance.status()).version;
    console.log(
      `etcd heartbeat bench: ${agentCount} agents, etcd ${version} (one member, data in ${os.tmpdir()}), ` +
        `${os.cpus().length} cores, Node ${process.versions.node}`,
    );

    // (b) a controller on etcd, (d) one on SQLite; N agents join each for real.
    const first = await startController(root, "ctl-1", etcd, keyFile, agentCount);
    const sqlite = await startChild(
      new URL("../heartbeat/controller-server.ts", import.meta.url),
      [join(root, "sqlite-controller"), String(agentCount), "warn"],
      join(root, "sqlite-controller.log"),
    );
    const joinAll = async (ready: Record<string, unknown>) => {
      const { cluster, token, caPem } = ready as { cluster: string; token: string; caPem: string };
      const joined = await mapLimit(
        Array.from({ length: agentCount }, (_, i) => i),
        8,
        (i) => joinCluster(cluster, caPem, `bench-agent-${i + 1}`, token),
      );
      return joined.map((j) =>
        connect(cluster, { caPem, certificatePem: j.certificatePem, privateKeyPem: j.privateKeyPem }),
      );
    };
    const onEtcd = {
      agents: await joinAll(first.ready),
      cpuUs: first.child.cpuUs,
      counter: { completed: 0 },
    };
    const onSqlite = { agents: await joinAll(sqlite.ready), cpuUs: sqlite.cpuUs, counter: { completed: 0 } };
    for (const target of [onEtcd, onSqlite])
      await runSlice(
        target.agents,
        target.cpuUs,
        { settleMs: 1_500, measureMs: 0, maxCount: 1 },
        target.counter,
      );
    await putLoop(raw, 500, agentCount);

    const slice = (target: typeof onEtcd, mode: HeartbeatMode) =>
      runSlice(
        target.agents,
        target.cpuUs,
        { settleMs: 200, measureMs: sliceMs, maxCount: 500_000 },
        target.counter,
        mode,
      );
    const baseline: { count: number; seconds: number }[] = [];
    const corral: Slice[] = [];
    const corralSqlite: Slice[] = [];
    const corralCalls: Slice[] = [];
    const writes: number[] = [];
    const calls = new Map<string, number>();
    for (let round = 0; round < rounds; round++) {
      baseline.push(await putLoop(raw, sliceMs, agentCount));
      const before = await etcdRevision(raw);
      const callsBefore = await etcdCalls(etcd.endpoint);
      corral.push(await slice(onEtcd, "stream"));
      writes.push((await etcdRevision(raw)) - before);
      for (const [method, count] of await etcdCalls(etcd.endpoint))
        calls.set(method, (calls.get(method) ?? 0) + count - (callsBefore.get(method) ?? 0));
      corralSqlite.push(await slice(onSqlite, "stream"));
      corralCalls.push(await slice(onEtcd, "call"));
    }
    for (const agent of [...onEtcd.agents, ...onSqlite.agents]) agent.close();
    await sqlite.stop(2_000);
    const baseRates = baseline.map((b) => b.count / b.seconds);
    const errors = [...corral, ...corralSqlite, ...corralCalls].reduce((sum, s) => sum + s.errors, 0);
    const errorSamples = [...corral, ...corralSqlite, ...corralCalls]
      .flatMap((s) => s.errorSamples)
      .slice(0, 5);
    const callRates = corralCalls.map((s) => s.count / s.seconds);
    const callRatios = callRates.map((rate, i) => rate / (baseRates[i] as number));
    const cpuPer = (slices: readonly Slice[]) =>
      median(slices.map((s) => (s.serverCpuUs === null ? Number.NaN : s.serverCpuUs / Math.max(1, s.count))));
    const corralRates = corral.map((s) => s.count / s.seconds);
    const sqliteRates = corralSqlite.map((s) => s.count / s.seconds);
    const ratios = corralRates.map((rate, i) => rate / (baseRates[i] as number));
    const sqliteRatios = corralRates.map((rate, i) => rate / (sqliteRates[i] as number));
    const heartbeats = corral.reduce((sum, s) => sum + s.count, 0);
    const etcdWrites = writes.reduce((sum, w) => sum + w, 0);
    const layer = await livenessLayer(etcd, agentCount, quick ? 1_000 : 2_000);

    console.log("");
    console.log(`(a) one etcd client, a put per heartbeat      ${fmt(median(baseRates))} writes/s`);
    console.log(
      `(b) corral controller on etcd, heartbeats     ${fmt(median(corralRates))} heartbeats/s on streams ` +
        `(controller CPU ${fmt(cpuPer(corral))} µs each; ${errors} failed heartbeats in all${
          errorSamples.length > 0 ? `: ${errorSamples.join("; ")}` : ""
        })`,
    );
    console.log(
      `(b') the same, a unary call per heartbeat     ${fmt(median(callRates))} heartbeats/s ` +
        `(controller CPU ${fmt(cpuPer(corralCalls))} µs each; b'/a ${fmt(median(callRatios), 1)}×)`,
    );
    console.log(
      `    etcd writes while (b) ran                 ${fmt(etcdWrites)} for ${fmt(heartbeats)} heartbeats ` +
        `(${fmt((etcdWrites * 1000) / Math.max(1, heartbeats), 1)} per 1000; the slices include 0.2 s settles)`,
    );
    console.log(
      `    etcd calls while (b) ran                  ${[...calls]
        .filter(([, n]) => n > 0)
        .map(([method, n]) => `${method} ${fmt(n)}`)
        .join(", ")} (the bench's own revision reads included)`,
    );
    console.log(
      `(d) the same controller on SQLite, streams   ${fmt(median(sqliteRates))} heartbeats/s ` +
        `(b/d ${fmt(median(sqliteRatios), 2)}: the RPC stack's limit on this machine)`,
    );
    console.log(
      `(c) liveness layer alone on etcd             ${fmt(layer.rate)} heartbeats/s, ` +
        `${fmt(layer.writes)} etcd writes for ${fmt(layer.count)} heartbeats`,
    );
    console.log(
      `ratio b/a (end to end, over mTLS)            ${fmt(median(ratios), 1)}× (goal ≥ 5×; per round: ${ratios
        .map((r) => `${fmt(r, 1)}×`)
        .join(", ")})`,
    );
    console.log(`ratio c/a (the liveness layer's ingestion)   ${fmt(layer.rate / median(baseRates), 0)}×`);

    // Failover: three controllers; SIGKILL the leader; time until another one leads.
    const controllers: ControllerChild[] = [first];
    for (const name of ["ctl-2", "ctl-3"])
      controllers.push(await startController(root, name, etcd, keyFile, 1));
    const failovers: number[] = [];
    let spare = 4;
    for (let round = 0; round < failoverRounds; round++) {
      const leader = await waitFor("a leader", 30_000, () => leaderAmong(controllers));
      const others = controllers.filter((c) => c !== leader);
      // Let the followers see the leader (and the presence leases settle) before the kill.
      await new Promise((resolve) => setTimeout(resolve, 500));
      const killedAt = performance.now();
      process.kill(leader.child.pid, "SIGKILL");
      const next = await waitFor("a new leader", 30_000, () => leaderAmong(others));
      const tookMs = performance.now() - killedAt;
      failovers.push(tookMs);
      console.log(
        `failover round ${round + 1}: SIGKILL ${leader.name} → ${next.name} leads after ${fmt(tookMs)} ms`,
      );
      controllers.splice(controllers.indexOf(leader), 1);
      if (round < failoverRounds - 1)
        controllers.push(await startController(root, `ctl-${spare++}`, etcd, keyFile, 1));
    }
    console.log(
      `failover (leaseTtl ${ttl}): median ${fmt(median(failovers))} ms, worst ${fmt(Math.max(...failovers))} ms ` +
        `(${fmt(median(failovers) / ttlMs, 2)} × TTL)`,
    );

    const result = {
      agents: agentCount,
      etcdVersion: version,
      baselineWritesPerSecond: median(baseRates),
      corralHeartbeatsPerSecond: median(corralRates),
      corralCallHeartbeatsPerSecond: median(callRates),
      ratioCalls: median(callRatios),
      sqliteHeartbeatsPerSecond: median(sqliteRates),
      livenessLayerHeartbeatsPerSecond: layer.rate,
      livenessLayerEtcdWrites: layer.writes,
      livenessLayerHeartbeats: layer.count,
      etcdCallsDuringHeartbeats: Object.fromEntries(calls),
      ratio: median(ratios),
      ratioLivenessLayer: layer.rate / median(baseRates),
      ratiosByRound: ratios,
      heartbeats,
      etcdWritesDuringHeartbeats: etcdWrites,
      failedCalls: errors,
      leaseTtl: ttl,
      failoverMs: failovers,
      failoverMedianMs: median(failovers),
    };
    mkdirSync(".bench-out", { recursive: true });
    writeFileSync(".bench-out/etcd-heartbeat.json", `${JSON.stringify(result, null, 2)}\n`);
    for (const c of controllers) await c.child.stop(2_000);
    if (errors > 0) process.exitCode = 1;
  } finally {
    raw.close();
    await etcd.stop();
  }
}

await main();
