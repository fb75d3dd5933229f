/**
 * Heartbeat capacity: how many `corral.v1.AgentService/Heartbeat` calls a real controller answers, and
 * what each costs it, next to a no-op Heartbeat on the same stack, in one run.
 *
 *   (a) baseline: RpcServer + the protobuf-es adapter, mTLS (certificates from a throwaway CA), a handler
 *       that answers `{}` at once (baseline-server.ts)
 *   (b) the real controller: `Controller.start` with a temp data dir (controller-server.ts); the agents
 *       join it for real (key + CSR + JoinService/Join with a join token) and heartbeat with the
 *       certificate they got, through authorization, the principal lookup and membership
 *
 * Each server runs in a child process of its own; this process plays all the agents for both: N agents
 * (--agents, default 200), each with its own TLS connection and one heartbeat in flight, sending the next
 * as soon as the last is answered — far above the real rate (every ≥ 5 s), so this measures capacity.
 * Each target is warmed up (2 s), then measured in 1 s slices taken in turn, 5 per target (--quick:
 * 1 s and 2 slices), after 0.2 s to settle each time: a burst of load from elsewhere on this noisy
 * machine hits both alike. Ratios are the median over rounds of the ratio within each round.
 *
 * Server CPU comes from /proc/<pid>/task/<tid>/schedstat (ns; else /proc/<pid>/stat, else the child's
 * process.cpuUsage() over IPC). The controller's
 * store revision is read (ClusterService/GetClusterStatus on the loopback bridge) before and after the
 * measured slices: heartbeats land in memory, so it should not move.
 *
 *   npm run bench:heartbeat [-- --quick] [-- --agents 500]
 *
 * Results also go to .bench-out/heartbeat.json. Exits non-zero if an agent could not join or a call
 * failed.
 */

import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import os from "node:os";
import { join } from "node:path";
import { performance } from "node:perf_hooks";
import { parseArgs } from "node:util";
import { create, fromBinary, toBinary } from "@bufbuild/protobuf";
import * as grpc from "@grpc/grpc-js";
import { systemClock } from "../../src/base/clock.ts";
import { parseDuration } from "../../src/base/duration.ts";
import { LivenessTracker } from "../../src/core/nodes/liveness.ts";
import { defaults } from "../../src/defaults.ts";
import { HeartbeatResponseSchema } from "../../src/gen/corral/v1/agent_pb.ts";
import {
  GetClusterStatusRequestSchema,
  type GetClusterStatusResponse,
  GetClusterStatusResponseSchema,
} from "../../src/gen/corral/v1/cluster_pb.ts";
import { CertificateAuthority } from "../../src/security/certificate-authority.ts";
import { nodeIdentityUri } from "../../src/security/principal.ts";
import { sumSlices } from "../common/slice-summary.ts";
import {
  type Counter,
  connect,
  heartbeatPath,
  heartbeatRequest,
  joinCluster,
  mapLimit,
  runSlice,
  type Slice,
  unary,
} from "./agents.ts";
import { removeOnExit, type ServerChild, startChild } from "./children.ts";

const { values: options } = parseArgs({
  options: {
    quick: { type: "boolean", default: false },
    agents: { type: "string", default: "200" },
    /** The controller's log level (its logs go to a file in the temp dir, shown if something fails). */
    "log-level": { type: "string", default: "info" },
  },
  strict: true,
});
const quick = options.quick === true;
const agentCount = Number(options.agents);
if (!Number.isInteger(agentCount) || agentCount < 1 || agentCount > 5_000) {
  console.error(`--agents must be a whole number from 1 to 5000, got ${options.agents}`);
  process.exit(2);
}
const logLevel = options["log-level"] ?? "info";

const timing = quick
  ? { warmupMs: 1_000, rounds: 2, sliceMs: 1_000, settleMs: 200, maxPerSlice: 200_000 }
  : { warmupMs: 2_000, rounds: 5, sliceMs: 1_000, settleMs: 200, maxPerSlice: 200_000 };
/** Joins at once: each is a CSR to sign and a few store writes; the token's use count is the contended bit. */
const joinConcurrency = 8;
/** The whole run, joins included, must end within this; past it the bench stops and fails. */
const runLimitMs = 300_000 + agentCount * 200;

type TargetId = "baseline" | "controller";
const targetNames: Record<TargetId, string> = {
  baseline: "(a) no-op Heartbeat, same stack",
  controller: "(b) corral controller",
};

interface Target {
  readonly id: TargetId;
  readonly server: ServerChild;
  readonly address: string;
  readonly agents: grpc.Client[];
  readonly counter: Counter;
}

interface TargetResult {
  readonly target: TargetId;
  readonly name: string;
  readonly agents: number;
  /** Heartbeats answered in the measured slices, all together. */
  readonly count: number;
  readonly seconds: number;
  /** Heartbeats per second over the measured slices. */
  readonly rate: number;
  readonly p50Ms: number | null;
  readonly p99Ms: number | null;
  /** Server CPU per heartbeat, µs; null where it could not be read. */
  readonly serverCpuUsPerHeartbeat: number | null;
  /** Server and client (this process) CPU, as a share of one core (100 = one core busy). */
  readonly serverCpuPct: number | null;
  readonly clientCpuPct: number;
  readonly serverRssMb: number | null;
  readonly cpuSource: string;
  /** Per measured slice (one per round), for the ratios. */
  readonly rateByRound: readonly number[];
  readonly cpuUsPerHeartbeatByRound: readonly (number | null)[];
  /** Failed calls, warm-up included. */
  readonly errors: number;
  readonly errorSamples: readonly string[];
}

// ---- helpers ----

function median(values: readonly number[]): number | null {
  if (values.length === 0) return null;
  const sorted = [...values].sort((x, y) => x - y);
  const middle = sorted.length >> 1;
  return sorted.length % 2 === 1
    ? (sorted[middle] as number)
    : ((sorted[middle - 1] as number) + (sorted[middle] as number)) / 2;
}

const fmt = (value: number | null, digits = 1): string =>
  value === null
    ? "n/a"
    : value.toLocaleString("en-US", { minimumFractionDigits: digits, maximumFractionDigits: digits });

function seconds(ms: number): string {
  if (ms < 60_000) return `${fmt(ms / 1000, ms % 1000 === 0 ? 0 : 1)} s`;
  if (ms < 3_600_000) return `${fmt(ms / 60_000, 1)} min`;
  return `${fmt(ms / 3_600_000, 1)} h`;
}

async function clusterStatus(bridge: grpc.Client): Promise<GetClusterStatusResponse> {
  const request = Buffer.from(toBinary(GetClusterStatusRequestSchema, create(GetClusterStatusRequestSchema)));
  return fromBinary(
    GetClusterStatusResponseSchema,
    await unary(bridge, "/corral.v1.ClusterService/GetClusterStatus", request),
  );
}

// ---- setting up ----

/** A throwaway CA for the baseline: its server certificate, and a client certificate per agent. */
async function startBaseline(root: string): Promise<Target> {
  const ca = await CertificateAuthority.loadOrCreate(join(root, "baseline-ca"), "bench");
  const server = await ca.issue({
    commonName: "bench-baseline",
    dnsNames: ["localhost"],
    ipAddresses: ["127.0.0.1"],
    validityMs: 3_600_000,
    usage: "server",
  });
  const tlsDir = join(root, "baseline-tls");
  mkdirSync(tlsDir, { mode: 0o700 });
  writeFileSync(join(tlsDir, "ca.crt"), ca.certificatePem);
  // The chain ends with the CA, as the controller's does: the same handshake size.
  writeFileSync(
    join(tlsDir, "server.crt"),
    `${server.certificatePem.trimEnd()}\n${ca.certificatePem.trimEnd()}\n`,
  );
  writeFileSync(join(tlsDir, "server.key"), server.privateKeyPem, { mode: 0o600 });
  const [child, clientCertificates] = await Promise.all([
    startChild(new URL("./baseline-server.ts", import.meta.url), [tlsDir], join(root, "baseline.log")),
    mapLimit(
      Array.from({ length: agentCount }, (_, i) => i),
      4,
      (i) =>
        ca.issue({
          commonName: agentName(i),
          dnsNames: [],
          ipAddresses: [],
          uris: [nodeIdentityUri(crypto.randomUUID())],
          validityMs: 3_600_000,
          usage: "client",
        }),
    ),
  ]);
  const address = String(child.ready.address);
  const agents = clientCertificates.map((c) =>
    connect(address, {
      caPem: ca.certificatePem,
      certificatePem: c.certificatePem,
      privateKeyPem: c.privateKeyPem,
    }),
  );
  return { id: "baseline", server: child, address, agents, counter: { completed: 0 } };
}

function agentName(i: number): string {
  return `bench-agent-${String(i + 1).padStart(4, "0")}`;
}

interface JoinSummary {
  readonly agents: number;
  readonly seconds: number;
  readonly joinP50Ms: number | null;
  readonly joinMaxMs: number | null;
  readonly retries: number;
}

/** The controller, and N agents that join it for real. */
async function startController(
  root: string,
): Promise<{ target: Target; bridge: grpc.Client; join: JoinSummary }> {
  const dataDir = join(root, "controller");
  const child = await startChild(
    new URL("./controller-server.ts", import.meta.url),
    [dataDir, String(agentCount), logLevel],
    join(root, "controller.log"),
  );
  const { cluster, bridge, token, caPem } = child.ready as Record<string, string>;
  if (!cluster || !bridge || !token || !caPem) throw new Error("the controller did not report its addresses");
  const started = performance.now();
  const joined = await mapLimit(
    Array.from({ length: agentCount }, (_, i) => i),
    joinConcurrency,
    (i) => joinCluster(cluster, caPem, agentName(i), token),
  ).catch((error: unknown) => {
    throw new Error(`agents could not join the controller: ${(error as Error).message}`, { cause: error });
  });
  const joinMs = joined.map((j) => j.joinMs);
  const summary: JoinSummary = {
    agents: joined.length,
    seconds: (performance.now() - started) / 1000,
    joinP50Ms: median(joinMs),
    joinMaxMs: joinMs.length === 0 ? null : Math.max(...joinMs),
    retries: joined.reduce((sum, j) => sum + j.retries, 0),
  };
  const agents = joined.map((j) =>
    connect(cluster, { caPem, certificatePem: j.certificatePem, privateKeyPem: j.privateKeyPem }),
  );
  return {
    target: { id: "controller", server: child, address: cluster, agents, counter: { completed: 0 } },
    bridge: new grpc.Client(bridge, grpc.credentials.createInsecure()),
    join: summary,
  };
}

/** Every agent's first heartbeat must be answered (and, by the controller, with the next interval). */
async function checkFirstHeartbeats(target: Target): Promise<void> {
  await mapLimit(target.agents, 32, async (agent, i) => {
    const response = fromBinary(HeartbeatResponseSchema, await unary(agent, heartbeatPath, heartbeatRequest));
    if (target.id === "controller" && response.nextIn === undefined) {
      throw new Error(`${agentName(i)}: the controller's answer has no next_in`);
    }
  }).catch((error: unknown) => {
    throw new Error(`${targetNames[target.id]}: first heartbeats failed: ${(error as Error).message}`, {
      cause: error,
    });
  });
}

// ---- measuring ----

async function measure(targets: readonly Target[], bridge: grpc.Client) {
  const slices = new Map<TargetId, Slice[]>(targets.map((t) => [t.id, []]));
  const warmup = new Map<TargetId, Slice>();
  const maxCount = timing.maxPerSlice;
  for (const t of targets) {
    warmup.set(
      t.id,
      await runSlice(
        t.agents,
        t.server.cpuUs,
        { settleMs: timing.warmupMs, measureMs: 0, maxCount },
        t.counter,
      ),
    );
  }
  const controller = targets.find((t) => t.id === "controller") as Target;
  const before = await clusterStatus(bridge);
  const heartbeatsBefore = controller.counter.completed;
  for (let round = 0; round < timing.rounds; round++) {
    for (let i = 0; i < targets.length; i++) {
      const t = targets[(round + i) % targets.length] as Target;
      const window = { settleMs: timing.settleMs, measureMs: timing.sliceMs, maxCount };
      (slices.get(t.id) as Slice[]).push(await runSlice(t.agents, t.server.cpuUs, window, t.counter));
    }
  }
  const after = await clusterStatus(bridge);
  const store = {
    revisionBefore: Number(before.revision),
    revisionAfter: Number(after.revision),
    revisionDelta: Number(after.revision - before.revision),
    /** Heartbeats the controller answered between the two reads (settle periods included). */
    heartbeatsBetween: controller.counter.completed - heartbeatsBefore,
    nodesBefore: nodeCounts(before),
    nodesAfter: nodeCounts(after),
  };
  return { slices, warmup, store };
}

function summarize(t: Target, measured: readonly Slice[], warmup: Slice | undefined): TargetResult {
  const totals = sumSlices(measured);
  const all = warmup === undefined ? measured : [warmup, ...measured];
  return {
    target: t.id,
    name: targetNames[t.id],
    agents: t.agents.length,
    count: totals.count,
    seconds: totals.seconds,
    rate: totals.rate,
    p50Ms: totals.p50Ms,
    p99Ms: totals.p99Ms,
    serverCpuUsPerHeartbeat: totals.serverCpuUsPerOp,
    serverCpuPct: totals.serverCpuPct,
    clientCpuPct: totals.clientCpuPct,
    serverRssMb: t.server.rssMb(),
    cpuSource: t.server.cpuSource,
    rateByRound: measured.map((s) => (s.seconds > 0 ? s.count / s.seconds : 0)),
    cpuUsPerHeartbeatByRound: measured.map((s) =>
      s.serverCpuUs === null || s.count === 0 ? null : s.serverCpuUs / s.count,
    ),
    errors: all.reduce((total, s) => total + s.errors, 0),
    errorSamples: all.flatMap((s) => s.errorSamples).slice(0, 5),
  };
}

interface Ratio {
  readonly name: string;
  /** Median over rounds of controller / baseline within each round. */
  readonly value: number | null;
  /** Over all measured slices together. */
  readonly overall: number | null;
  readonly byRound: readonly (number | null)[];
}

function ratio(
  name: string,
  a: TargetResult,
  b: TargetResult,
  perRound: (r: TargetResult) => readonly (number | null)[],
  total: (r: TargetResult) => number | null,
): Ratio {
  const top = perRound(b);
  const bottom = perRound(a);
  const byRound = top.map((t, i) => {
    const under = bottom[i];
    return t === null || under === null || under === undefined || under === 0 ? null : t / under;
  });
  const ta = total(a);
  const tb = total(b);
  return {
    name,
    value: median(byRound.filter((r): r is number => r !== null)),
    overall: ta === null || tb === null || ta === 0 ? null : tb / ta,
    byRound,
  };
}

// ---- what it means for a real fleet ----

function realWorld(controller: TargetResult) {
  const liveness = defaults.liveness;
  const tracker = new LivenessTracker({ clock: systemClock, ...liveness });
  const minIntervalMs = parseDuration(liveness.minInterval);
  const cap = liveness.maxHeartbeatsPerSecond;
  const capacity = controller.rate;
  const cpuUs = controller.serverCpuUsPerHeartbeat;
  /** Heartbeats per second that n agents send when each waits interval(n). */
  const rateFor = (n: number) => (n * 1000) / tracker.interval(n);
  // interval(n) = max(minInterval, n / cap s): the fleet sends min(n / minInterval, cap) heartbeats a second.
  const maxAgents = capacity >= cap ? null : Math.floor((capacity * minIntervalMs) / 1000);
  const fleets = [...new Set([agentCount, (cap * minIntervalMs) / 1000, 1_000, 10_000, 100_000])]
    .sort((x, y) => x - y)
    .map((n) => {
      const intervalMs = tracker.interval(n);
      const rate = rateFor(n);
      return {
        agents: n,
        intervalMs,
        heartbeatsPerSecond: rate,
        shareOfCapacity: capacity > 0 ? rate / capacity : null,
        serverCpuPctOfCore: cpuUs === null ? null : (rate * cpuUs) / 1e4,
        suspectAfterMs: liveness.suspectAfterMissed * intervalMs,
      };
    });
  return {
    formula: `interval(n) = max(${liveness.minInterval}, n / ${cap} s)`,
    capacityHeartbeatsPerSecond: capacity,
    serverCpuUsPerHeartbeat: cpuUs,
    /** Heartbeats one core could answer if the controller did nothing else. */
    heartbeatsPerSecondPerCore: cpuUs === null ? null : 1e6 / cpuUs,
    maxHeartbeatsPerSecond: cap,
    minIntervalMs,
    /** The fleet size up to which agents heartbeat at the minimum interval. */
    agentsAtMinInterval: (cap * minIntervalMs) / 1000,
    /** Agents the measured capacity would carry if every one heartbeat at the minimum interval. */
    agentsAtMinIntervalForMeasuredCapacity: Math.floor((capacity * minIntervalMs) / 1000),
    /** Agents one controller serves under the formula: null = no bound from heartbeats (capacity ≥ cap). */
    maxAgentsUnderFormula: maxAgents,
    /** The most the formula ever asks of the controller, as a share of its measured capacity. */
    capShareOfCapacity: capacity > 0 ? cap / capacity : null,
    capServerCpuPctOfCore: cpuUs === null ? null : (cap * cpuUs) / 1e4,
    fleets,
  };
}

// ---- report ----

function printTable(results: readonly TargetResult[], ratios: readonly Ratio[]): void {
  const header = [
    "target",
    "agents",
    "heartbeats/s",
    "p50 ms",
    "p99 ms",
    "server CPU",
    "CPU µs/hb",
    "client CPU",
    "errors",
  ];
  const rows = results.map((r) => [
    r.name,
    String(r.agents),
    fmt(r.rate, 0),
    fmt(r.p50Ms, 2),
    fmt(r.p99Ms, 2),
    `${fmt(r.serverCpuPct, 0)}%`,
    fmt(r.serverCpuUsPerHeartbeat, 1),
    `${fmt(r.clientCpuPct, 0)}%`,
    String(r.errors),
  ]);
  const rate = ratios.find((r) => r.name === "throughput");
  const cpu = ratios.find((r) => r.name === "cpu");
  const times = (x: number | null | undefined) =>
    x === null || x === undefined ? "n/a" : `${x.toFixed(2)}×`;
  rows.push([
    "ratio (b)/(a), median of rounds",
    "",
    times(rate?.value),
    "",
    "",
    "",
    times(cpu?.value),
    "",
    "",
  ]);
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((row) => (row[i] as string).length)));
  const line = (cells: readonly string[]) =>
    cells
      .map((cell, i) => (i === 0 ? cell.padEnd(widths[i] as number) : cell.padStart(widths[i] as number)))
      .join("  ");
  console.log(line(header));
  for (const [i, row] of rows.entries()) {
    if (i === results.length) console.log(line(widths.map((w) => "-".repeat(w))));
    console.log(line(row));
  }
  for (const r of ratios) {
    const rounds = r.byRound.map((x) => (x === null ? "n/a" : x.toFixed(2))).join(" ");
    console.log(
      `  ${r.name === "cpu" ? "CPU per heartbeat" : "throughput       "} (b)/(a): ${times(r.value)} median, ` +
        `${times(r.overall)} over all slices; by round [${rounds}]`,
    );
  }
}

/** The servers' logs live in the temp dir, which goes away: show their ends when something failed. */
function printLogTails(root: string, lines = 20): void {
  for (const name of ["baseline.log", "controller.log"]) {
    let text: string;
    try {
      text = readFileSync(join(root, name), "utf8").trimEnd();
    } catch {
      continue;
    }
    if (text === "") continue;
    console.error(`--- last lines of ${name} ---\n${text.split("\n").slice(-lines).join("\n")}`);
  }
}

function nodeCounts(status: GetClusterStatusResponse) {
  const n = status.nodes;
  return {
    total: n?.total ?? 0,
    ready: n?.ready ?? 0,
    suspect: n?.suspect ?? 0,
    down: n?.down ?? 0,
    pending: n?.pending ?? 0,
    left: n?.left ?? 0,
  };
}

// ---- main ----

async function main(): Promise<number> {
  const watchdog = setTimeout(() => {
    console.error(`the bench ran past ${runLimitMs / 1000} s; stopping`);
    process.exit(1);
  }, runLimitMs);
  watchdog.unref();

  console.log(
    `corral heartbeat bench${quick ? " --quick" : ""}: Node ${process.version}, ${os.cpus().length} CPUs; ` +
      `${agentCount} agents per target, each its own mTLS connection, 1 heartbeat in flight; per target ` +
      `warm-up ${timing.warmupMs / 1000} s, then ${timing.rounds} slices of ${timing.sliceMs / 1000} s ` +
      `(after ${timing.settleMs / 1000} s to settle) taken in turn, at most ` +
      `${timing.maxPerSlice.toLocaleString("en-US")} heartbeats a slice\n`,
  );
  const root = mkdtempSync(join(os.tmpdir(), "corral-heartbeat-bench-"));
  removeOnExit(root);
  const targets: Target[] = [];
  let bridge: grpc.Client | undefined;
  try {
    const [baseline, controller] = await Promise.all([startBaseline(root), startController(root)]);
    targets.push(baseline, controller.target);
    bridge = controller.bridge;
    const { join: joined } = controller;
    console.log(
      `${joined.agents} agents joined the controller in ${fmt(joined.seconds, 1)} s (${joinConcurrency} at once; ` +
        `Join p50 ${fmt(joined.joinP50Ms, 1)} ms, max ${fmt(joined.joinMaxMs, 1)} ms, ${joined.retries} retried)`,
    );
    for (const t of targets) await checkFirstHeartbeats(t);
    const ready = (await clusterStatus(bridge)).nodes?.ready ?? 0;
    // The controller's own node is ready too.
    if (ready < agentCount)
      throw new Error(`only ${ready} nodes are ready after ${agentCount} agents joined`);

    const { slices, warmup, store } = await measure(targets, bridge);
    const results = targets.map((t) => summarize(t, slices.get(t.id) ?? [], warmup.get(t.id)));
    const [a, b] = results as [TargetResult, TargetResult];
    const ratios = [
      ratio(
        "throughput",
        a,
        b,
        (r) => r.rateByRound,
        (r) => r.rate,
      ),
      ratio(
        "cpu",
        a,
        b,
        (r) => r.cpuUsPerHeartbeatByRound,
        (r) => r.serverCpuUsPerHeartbeat,
      ),
    ];
    const fleet = realWorld(b);

    for (const t of targets) for (const agent of t.agents) agent.close();
    bridge.close();
    await Promise.all(targets.map((t) => t.server.stop()));

    console.log(
      `\n${a.name}: ${targets[0]?.address}, pid ${targets[0]?.server.pid}` +
        `\n${b.name}: ${targets[1]?.address}, pid ${targets[1]?.server.pid}; server CPU from ${b.cpuSource}\n`,
    );
    printTable(results, ratios);

    const writes = store.revisionDelta;
    console.log(
      `\ncontroller store revision: ${store.revisionBefore} before, ${store.revisionAfter} after the measured ` +
        `slices (${writes >= 0 ? "+" : ""}${writes}) while ${agentCount} agents sent ` +
        `${store.heartbeatsBetween.toLocaleString("en-US")} heartbeats → ` +
        `${fmt(store.heartbeatsBetween > 0 ? writes / store.heartbeatsBetween : null, 4)} store writes per heartbeat` +
        `${writes === 0 ? "" : "  (expected 0: see the controller's log)"}`,
    );
    console.log(
      `nodes ready: ${store.nodesBefore.ready} before, ${store.nodesAfter.ready} after ` +
        `(suspect ${store.nodesAfter.suspect}, down ${store.nodesAfter.down}; the controller's own node included); ` +
        `controller RSS ${fmt(b.serverRssMb, 0)} MiB with ${agentCount} connected agents`,
    );

    const capacity = fmt(fleet.capacityHeartbeatsPerSecond, 0);
    console.log(
      `\nreal fleets (${fleet.formula}, suspect after ${defaults.liveness.suspectAfterMissed} missed intervals):` +
        `\n  measured capacity ${capacity} heartbeats/s here (load generator on the same cores); ` +
        `${fmt(fleet.serverCpuUsPerHeartbeat, 1)} µs of controller CPU each = ` +
        `${fmt(fleet.heartbeatsPerSecondPerCore, 0)}/s per core if it did nothing else` +
        `\n  every agent at the ${seconds(fleet.minIntervalMs)} minimum interval: ${capacity}/s × ` +
        `${seconds(fleet.minIntervalMs)} = ${fleet.agentsAtMinIntervalForMeasuredCapacity.toLocaleString("en-US")} agents ` +
        `before heartbeats alone saturate the controller` +
        `\n  with the formula the fleet never sends more than ${fleet.maxHeartbeatsPerSecond}/s ` +
        `(${fmt((fleet.capShareOfCapacity ?? 0) * 100, 1)}% of the measured capacity, ` +
        `${fmt(fleet.capServerCpuPctOfCore, 1)}% of a core): ` +
        (fleet.maxAgentsUnderFormula === null
          ? "heartbeats put no bound on the fleet; past " +
            `${fleet.agentsAtMinInterval} agents the interval (and the time to notice a dead node) grows instead`
          : `the controller serves at most ${fleet.maxAgentsUnderFormula.toLocaleString("en-US")} agents`),
    );
    const fleetRows = fleet.fleets.map((f) => [
      f.agents.toLocaleString("en-US"),
      seconds(f.intervalMs),
      fmt(f.heartbeatsPerSecond, 1),
      `${fmt((f.shareOfCapacity ?? 0) * 100, 1)}%`,
      `${fmt(f.serverCpuPctOfCore, 2)}%`,
      seconds(f.suspectAfterMs),
    ]);
    const fleetHeader = [
      "agents",
      "interval",
      "heartbeats/s",
      "of capacity",
      "CPU of a core",
      "suspect after",
    ];
    const widths = fleetHeader.map((h, i) =>
      Math.max(h.length, ...fleetRows.map((row) => (row[i] as string).length)),
    );
    for (const row of [fleetHeader, ...fleetRows]) {
      console.log(`  ${row.map((cell, i) => cell.padStart(widths[i] as number)).join("  ")}`);
    }

    const out = new URL("../../.bench-out/", import.meta.url);
    mkdirSync(out, { recursive: true });
    const file = new URL("heartbeat.json", out);
    const report = {
      date: new Date().toISOString(),
      node: process.version,
      cpus: os.cpus().length,
      quick,
      agents: agentCount,
      timing,
      join: joined,
      results,
      ratios,
      store,
      realWorld: fleet,
    };
    writeFileSync(file, `${JSON.stringify(report, null, 2)}\n`);
    console.log(`\nwrote ${file.pathname}`);

    const errors = results.reduce((sum, r) => sum + r.errors, 0);
    if (errors > 0) {
      for (const r of results) for (const sample of r.errorSamples) console.error(`${r.name}: ${sample}`);
      console.error(`${errors} heartbeats failed`);
      return 1;
    }
    return 0;
  } catch (error) {
    console.error(`\nheartbeat bench failed: ${(error as Error).message}`);
    printLogTails(root);
    return 1;
  } finally {
    for (const t of targets) for (const agent of t.agents) agent.close();
    bridge?.close();
    await Promise.all(targets.map((t) => t.server.stop()));
    rmSync(root, { recursive: true, force: true });
  }
}

// Exit explicitly: after a failure, channels or children may still hold the event loop (the exit hook
// in children.ts kills what is left and removes the temp dirs).
process.exit(await main());
