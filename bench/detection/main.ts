/**
 * Death detection (issue #21): simulated agents (bench/detection/agents.ts: real joins, one mTLS
 * heartbeat stream each) on the real controller with corral's default liveness and keepalive settings,
 * in three processes of CORRAL_BENCH_AGENTS / 3 agents each. Once all heartbeat, one process is killed
 * (SIGKILL: its sockets close), one frozen (SIGSTOP: its sockets stay open and silent), one left alone.
 * Prints, per kind, the time from the signal to `suspect` and to `down` (median and max over its
 * nodes, as announced on the controller's event feed) beside the targets, and any status change of the
 * agents left alone (false suspects). Runs CORRAL_BENCH_RUNS times (2).
 *
 *   CORRAL_BENCH_AGENTS=300 npm run bench:detection
 */
import { type ChildProcess, fork } from "node:child_process";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { defaults } from "../../src/defaults.ts";

const total = Number(process.env.CORRAL_BENCH_AGENTS ?? 300);
const perGroup = Math.max(1, Math.floor(total / 3));
const runs = Number(process.env.CORRAL_BENCH_RUNS ?? 2);
const timeoutMs = 60_000;
const here = import.meta.dirname;

interface Change {
  name: string;
  to: string;
  at: number;
}

function child(script: string, args: string[]): ChildProcess {
  return fork(join(here, script), args, {
    execArgv: ["--import", "tsx"],
    stdio: ["ignore", "inherit", "inherit", "ipc"],
  });
}

function readyOf<T>(process: ChildProcess, what: string): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    process.once("exit", (code) => reject(new Error(`${what} exited (${code}) before it was ready`)));
    process.on("message", (message: { ready?: T }) => {
      if (message.ready !== undefined) resolve(message.ready);
    });
  });
}

const quantile = (xs: number[], q: number) =>
  [...xs].sort((a, b) => a - b)[Math.min(xs.length - 1, Math.floor(q * xs.length))] ?? Number.NaN;

async function runOnce() {
  const dir = await mkdtemp(join(tmpdir(), "corral-detection-"));
  const changes: Change[] = [];
  const children: ChildProcess[] = [];
  try {
    const controller = child("controller.ts", [join(dir, "controller"), String(perGroup * 3)]);
    children.push(controller);
    controller.on("message", (message: { status?: Change }) => {
      if (message.status !== undefined) changes.push(message.status);
    });
    const ready = await readyOf<{ cluster: string; token: string; caPem: string }>(
      controller,
      "the controller",
    );
    const caFile = join(dir, "ca.pem");
    await writeFile(caFile, ready.caPem);
    const groups = ["killed", "frozen", "alive"] as const;
    const agents = groups.map((group) => {
      const process = child("agents.ts", [ready.cluster, ready.token, caFile, group, String(perGroup)]);
      children.push(process);
      return process;
    });
    await Promise.all(agents.map((process, i) => readyOf<number>(process, `agents ${groups[i]}`)));
    // Past the first heartbeats: every stream is open and answered.
    await new Promise((resolve) => setTimeout(resolve, 2_000));
    const signalledAt = Date.now();
    agents[0]?.kill("SIGKILL");
    agents[1]?.kill("SIGSTOP");
    const byGroup = (group: string, to: string) =>
      changes.filter((c) => c.name.startsWith(`${group}-`) && c.to === to && c.at >= signalledAt);
    const until = Date.now() + timeoutMs;
    while (
      Date.now() < until &&
      (byGroup("killed", "down").length < perGroup || byGroup("frozen", "down").length < perGroup)
    )
      await new Promise((resolve) => setTimeout(resolve, 100));
    agents[1]?.kill("SIGCONT");
    const summary = (group: string, to: string) => {
      const times = byGroup(group, to).map((c) => (c.at - signalledAt) / 1000);
      return { n: times.length, p50: quantile(times, 0.5), max: quantile(times, 1) };
    };
    const falseChanges = changes.filter((c) => c.name.startsWith("alive-") && c.to !== "ready").length;
    return {
      killedSuspect: summary("killed", "suspect"),
      killedDown: summary("killed", "down"),
      frozenSuspect: summary("frozen", "suspect"),
      frozenDown: summary("frozen", "down"),
      falseChanges,
    };
  } finally {
    for (const process of children) if (process.exitCode === null) process.kill("SIGKILL");
    await rm(dir, { recursive: true, force: true });
  }
}

const keepalive = `keepalive ${defaults.rpc.keepaliveTime} + ${defaults.rpc.keepaliveTimeout}`;
console.log(
  `death detection: ${perGroup} agents killed, ${perGroup} frozen, ${perGroup} left alone; defaults: ${keepalive}, ` +
    `streamLostDownAfter ${defaults.liveness.streamLostDownAfter}, minInterval ${defaults.liveness.minInterval} × ` +
    `suspectAfterMissed ${defaults.liveness.suspectAfterMissed}, downAfter ${defaults.liveness.downAfter}`,
);
const s = (x: { n: number; p50: number; max: number }) =>
  x.n < perGroup
    ? `only ${x.n}/${perGroup} in ${timeoutMs / 1000}s`
    : `p50 ${x.p50.toFixed(2)} s, max ${x.max.toFixed(2)} s`;
for (let run = 1; run <= runs; run++) {
  const r = await runOnce();
  console.log(
    `run ${run}: kill -9 → suspect ${s(r.killedSuspect)}, down ${s(r.killedDown)} (targets ≤ 1 s, ≤ 3 s); ` +
      `SIGSTOP → suspect ${s(r.frozenSuspect)}, down ${s(r.frozenDown)} (target ≤ 15 s); ` +
      `agents left alone that changed status: ${r.falseChanges} (target 0)`,
  );
}
