/**
 * Many nodes going silent at once (issue #21): N ready nodes that never heartbeat — a rack that lost
 * power, a network split, agents slow to come back after a controller restart — turn suspect, then
 * down, together, while a prober calls grpc.health.v1.Health/Check every CORRAL_BENCH_PROBE_MS (100).
 * Prints, for each N, Health/Check p50/p99/max during the storm beside the same prober against the
 * same controller once the storm is over (the baseline), and how long the N suspect and the N down
 * transitions took from the first announced to the last (written and announced on the event feed).
 *
 * The controller, the prober and the bench are three processes on one machine: load and server share
 * its cores. The nodes are written straight into the controller's SQLite store before it starts (seeding
 * 10 000 mTLS agents would take minutes); they are tracked from the controller's start, as after a restart.
 *
 *   CORRAL_BENCH_NODES=1000,5000,10000 CORRAL_BENCH_RUNS=2 npm run bench:mass-silence
 */
import { type ChildProcess, fork } from "node:child_process";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { seedNodes } from "./seed.ts";

const sizes = (process.env.CORRAL_BENCH_NODES ?? "1000,5000,10000").split(",").map(Number);
const runs = Number(process.env.CORRAL_BENCH_RUNS ?? 2);
const probeMs = Number(process.env.CORRAL_BENCH_PROBE_MS ?? 100);
/** A run whose storm is not over by then reports what it saw (the issue saw wedges of minutes). */
const timeoutMs = Number(process.env.CORRAL_BENCH_TIMEOUT_S ?? 120) * 1000;
const quietMs = 4_000;
const here = import.meta.dirname;

interface Probe {
  sentAt: number;
  ms: number;
  ok: boolean;
}

interface RunResult {
  storm: Stats;
  quiet: Stats;
  suspect: Spread;
  down: Spread;
}
interface Stats {
  n: number;
  p50: number;
  p99: number;
  max: number;
  failed: number;
}
interface Spread {
  count: number;
  first: number;
  last: number;
}

/** CORRAL_BENCH_PROF=<dir>: the controller writes a CPU profile there (node --cpu-prof). */
const profileDir = process.env.CORRAL_BENCH_PROF;

function child(script: string, args: string[]): ChildProcess {
  const profile =
    script === "controller.ts" && profileDir !== undefined
      ? ["--cpu-prof", "--cpu-prof-dir", profileDir]
      : [];
  return fork(join(here, script), args, {
    execArgv: ["--import", "tsx", ...profile],
    stdio: ["ignore", "inherit", "inherit", "ipc"],
  });
}

function stats(probes: readonly Probe[]): Stats {
  const ms = probes.map((p) => p.ms).sort((a, b) => a - b);
  const at = (q: number) => ms[Math.min(ms.length - 1, Math.floor(q * ms.length))] ?? Number.NaN;
  return {
    n: ms.length,
    p50: at(0.5),
    p99: at(0.99),
    max: ms.at(-1) ?? Number.NaN,
    failed: probes.filter((p) => !p.ok).length,
  };
}

async function runOnce(nodes: number): Promise<RunResult> {
  const dataDir = await mkdtemp(join(tmpdir(), "corral-mass-silence-"));
  const probes: Probe[] = [];
  const suspect: Spread = { count: 0, first: 0, last: 0 };
  const down: Spread = { count: 0, first: 0, last: 0 };
  let controller: ChildProcess | undefined;
  let prober: ChildProcess | undefined;
  try {
    await seedNodes(dataDir, nodes);
    controller = child("controller.ts", [dataDir]);
    const ready = await new Promise<{ bridge: string }>((resolve, reject) => {
      controller?.once("exit", (code) =>
        reject(new Error(`the controller exited (${code}) before it was ready`)),
      );
      controller?.on(
        "message",
        (message: { ready?: { bridge: string }; announced?: Record<string, number>; at?: number }) => {
          if (message.ready !== undefined) resolve(message.ready);
          if (message.announced === undefined || message.at === undefined) return;
          for (const [status, spread] of [
            ["suspect", suspect],
            ["down", down],
          ] as const) {
            const count = message.announced[status] ?? 0;
            if (count === 0) continue;
            if (spread.count === 0) spread.first = message.at;
            spread.count += count;
            spread.last = message.at;
          }
        },
      );
    });
    prober = child("prober.ts", [ready.bridge, String(probeMs)]);
    prober.on("message", (message: Probe & { done?: boolean }) => {
      if (message.done === undefined) probes.push(message);
    });
    const until = Date.now() + timeoutMs;
    while (Date.now() < until && (suspect.count < nodes || down.count < nodes))
      await new Promise((resolve) => setTimeout(resolve, 100));
    const stormEnd = down.count >= nodes ? down.last : Date.now();
    await new Promise((resolve) => setTimeout(resolve, quietMs));
    const proberDone = new Promise((resolve) => prober?.once("exit", resolve));
    prober.send({ stop: true });
    await proberDone;
    const stormStart = (suspect.first || stormEnd) - 1_000;
    return {
      storm: stats(probes.filter((p) => p.sentAt >= stormStart && p.sentAt <= stormEnd)),
      quiet: stats(probes.filter((p) => p.sentAt > stormEnd + 1_000)),
      suspect,
      down,
    };
  } finally {
    prober?.kill("SIGKILL");
    if (controller !== undefined && controller.exitCode === null) {
      const gone = new Promise((resolve) => controller?.once("exit", resolve));
      controller.send({ stop: true });
      const timer = setTimeout(() => controller?.kill("SIGKILL"), 5_000);
      await gone;
      clearTimeout(timer);
    }
    await rm(dataDir, { recursive: true, force: true });
  }
}

const f = (ms: number) => (Number.isFinite(ms) ? `${ms.toFixed(1)} ms` : "n/a");
const spreadText = (s: Spread, nodes: number) =>
  s.count < nodes
    ? `only ${s.count}/${nodes} announced in ${timeoutMs / 1000}s`
    : `${nodes} in ${s.last - s.first} ms`;
const finite = (xs: number[]) => xs.filter((x) => !Number.isNaN(x)).sort((a, b) => a - b);
const median = (xs: number[]) => {
  const s = finite(xs);
  if (s.length === 0) return Number.NaN;
  return ((s[Math.floor((s.length - 1) / 2)] ?? 0) + (s[Math.floor(s.length / 2)] ?? 0)) / 2;
};
const range = (xs: number[]) => `${f(Math.min(...finite(xs)))}–${f(Math.max(...finite(xs)))}`;

console.log(
  `mass silence: Health/Check every ${probeMs} ms; ${runs} run(s) per size; node ${process.version}`,
);
for (const nodes of sizes) {
  const results: RunResult[] = [];
  for (let run = 1; run <= runs; run++) {
    const r = await runOnce(nodes);
    results.push(r);
    console.log(
      `N=${nodes} run ${run}: suspect ${spreadText(r.suspect, nodes)}, down ${spreadText(r.down, nodes)} (first to last announced); ` +
        `Health/Check in the storm p50 ${f(r.storm.p50)} p99 ${f(r.storm.p99)} max ${f(r.storm.max)} (n=${r.storm.n}, failed ${r.storm.failed}) | ` +
        `baseline, same controller, no storm: p50 ${f(r.quiet.p50)} p99 ${f(r.quiet.p99)} max ${f(r.quiet.max)} (n=${r.quiet.n})`,
    );
  }
  const pick = (g: (r: RunResult) => number) => results.map(g);
  const line = (name: string, g: (r: RunResult) => number) =>
    `${name} ${f(median(pick(g)))} [${range(pick(g))}]`;
  console.log(
    `N=${nodes} median [range] of ${runs}: ${line("storm p99", (r) => r.storm.p99)}, ${line("storm max", (r) => r.storm.max)}, ` +
      `${line("baseline p99", (r) => r.quiet.p99)}; ${line("suspect spread", (r) => (r.suspect.count < nodes ? Number.POSITIVE_INFINITY : r.suspect.last - r.suspect.first))}, ` +
      `${line("down spread", (r) => (r.down.count < nodes ? Number.POSITIVE_INFINITY : r.down.last - r.down.first))} (targets: p99 ≤ 100 ms, all written and announced ≤ 2 s)`,
  );
}
