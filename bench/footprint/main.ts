/**
 * Issue #20, item 6: corral's footprint, built (dist/, as the installed package runs it) versus from
 * source (tsx), in one run:
 *   - `corral --version` wall time, median of N, beside `node -e 0`;
 *   - an idle controller's and an idle agent's RSS after `--idle` (SQLite controller with only its own
 *     node; the agent joined to it by token; a second agent run with defaults.agent.nodeFlags, as the
 *     demo starts its agents), beside a bare idle node process;
 *   - a demo cluster's start-up time (`corral demo` until "cluster is up").
 * Targets (issue #20): --version ≤ 3× node -e 0; idle agent ≤ 60 MiB; idle controller ≤ 100 MiB.
 *
 *   npm run bench:footprint [-- --runs 15 --idle 30s --skip-build]
 *
 * RSS is read from /proc/<pid>/status (VmRSS, with RssAnon and RssFile: the heap and other private
 * memory versus the mapped node binary and libraries). Results also go to .bench-out/footprint.json.
 */
import { execFileSync, spawn } from "node:child_process";
import { mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { parseDuration } from "../../src/base/duration.ts";
import { defaults } from "../../src/defaults.ts";
import {
  type AgentProcess,
  type ControllerProcess,
  CorralProcesses,
  corralBin,
  startAgentProcess,
  startControllerProcess,
} from "../../test/helpers/corral-processes.ts";

const { values } = parseArgs({
  options: {
    runs: { type: "string", default: "15" },
    idle: { type: "string", default: "30s" },
    "skip-build": { type: "boolean", default: false },
    modes: { type: "string", default: "built,source" },
    "skip-demo": { type: "boolean", default: false },
  },
});
const runs = Number(values.runs);
const idleMs = parseDuration(values.idle);
const repo = join(import.meta.dirname, "../..");

type Mode = "built" | "source";
const modes = values.modes.split(",") as Mode[];

function envFor(mode: Mode): NodeJS.ProcessEnv {
  const env = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith("CORRAL_")));
  return mode === "built" ? { ...env, CORRAL_USE_DIST: "1" } : env;
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] ?? Number.NaN;

function wallMs(args: readonly string[], env: NodeJS.ProcessEnv): number {
  const started = process.hrtime.bigint();
  execFileSync(process.execPath, args, { env, stdio: "ignore" });
  return Number(process.hrtime.bigint() - started) / 1e6;
}

interface Memory {
  rss: number;
  anon: number;
  file: number;
}

function memoryOf(pid: number): Memory {
  const status = readFileSync(`/proc/${pid}/status`, "utf8");
  const kib = (key: string) =>
    Number(new RegExp(`^${key}:\\s+(\\d+) kB`, "m").exec(status)?.[1] ?? Number.NaN);
  return { rss: kib("VmRSS") / 1024, anon: kib("RssAnon") / 1024, file: kib("RssFile") / 1024 };
}

const mib = (m: Memory) => `${m.rss.toFixed(1)} MiB (anon ${m.anon.toFixed(1)}, file ${m.file.toFixed(1)})`;
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

interface Idle {
  controller: Memory;
  agent: Memory;
  /** The same agent run with defaults.agent.nodeFlags, as the demo and the agent's unit start it. */
  agentWithFlags: Memory;
}

/** A controller and two agents joined to it (one with corral's agent node flags), idle for `idleMs`. */
async function idleFootprint(mode: Mode, root: string): Promise<Idle> {
  const env = envFor(mode);
  const processes = new CorralProcesses({ env });
  const flagged = new CorralProcesses({
    env: { ...env, NODE_OPTIONS: `${env.NODE_OPTIONS ?? ""} ${defaults.agent.nodeFlags.join(" ")}`.trim() },
  });
  try {
    const home = join(root, `${mode}-controller`);
    mkdirSync(home, { recursive: true });
    const controller = await startControllerProcess(processes, home, { name: `${mode}-controller` });
    const token = execFileSync(
      process.execPath,
      [corralBin, "--server", controller.bridge, "token", "create", "--role", "node"],
      { env, encoding: "utf8", stdio: ["ignore", "pipe", "ignore"] },
    ).trim();
    const agent = await startAgentProcess(processes, join(root, `${mode}-agent`), [
      "--name",
      `${mode}-agent`,
      "--join",
      controller.cluster,
      "--token",
      token,
    ]);
    const agentWithFlags = await startAgentProcess(flagged, join(root, `${mode}-agent-flags`), [
      "--name",
      `${mode}-agent-flags`,
      "--join",
      controller.cluster,
      "--token",
      token,
    ]);
    await sleep(idleMs);
    const pid = (p: ControllerProcess | AgentProcess) => p.process.child.pid ?? 0;
    return {
      controller: memoryOf(pid(controller)),
      agent: memoryOf(pid(agent)),
      agentWithFlags: memoryOf(pid(agentWithFlags)),
    };
  } finally {
    await Promise.all([processes.killAll(), flagged.killAll()]);
  }
}

async function idleBareNode(): Promise<Memory> {
  const child = spawn(process.execPath, ["-e", "setInterval(() => {}, 1 << 30)"], { stdio: "ignore" });
  try {
    await sleep(1_000);
    return memoryOf(child.pid ?? 0);
  } finally {
    child.kill("SIGKILL");
  }
}

/** `corral demo` on a free-looking port range until it prints that the cluster is up. */
async function demoStartup(mode: Mode, root: string): Promise<number> {
  const portBase = 20_000 + Math.floor(Math.random() * 20_000);
  const started = process.hrtime.bigint();
  const child = spawn(
    process.execPath,
    [corralBin, "demo", "--data-dir", join(root, `${mode}-demo`), "--port-base", String(portBase)],
    { env: envFor(mode), stdio: ["ignore", "pipe", "pipe"] },
  );
  let out = "";
  let err = "";
  child.stderr.on("data", (chunk: Buffer) => {
    err += chunk.toString();
  });
  try {
    return await new Promise<number>((resolve, reject) => {
      const timer = setTimeout(
        () => reject(new Error(`demo (${mode}) not up in 120 s: ${err.slice(-2000)}`)),
        120_000,
      );
      child.stdout.on("data", (chunk: Buffer) => {
        out += chunk.toString();
        if (out.includes("cluster is up")) {
          clearTimeout(timer);
          resolve(Number(process.hrtime.bigint() - started) / 1e6);
        }
      });
      child.once("exit", (code) => {
        clearTimeout(timer);
        reject(new Error(`demo (${mode}) exited ${code} before it was up: ${err.slice(-2000)}`));
      });
    });
  } finally {
    const exited = new Promise((resolve) => child.once("exit", resolve));
    if (child.exitCode === null) child.kill("SIGTERM");
    const kill = setTimeout(() => child.kill("SIGKILL"), 10_000);
    await exited;
    clearTimeout(kill);
  }
}

if (!values["skip-build"]) {
  const started = performance.now();
  execFileSync(process.execPath, ["--import", "tsx", "scripts/build-dist.ts"], {
    cwd: repo,
    stdio: "ignore",
  });
  console.log(`npm run build: ${Math.round(performance.now() - started)} ms`);
}

const root = await mkdtemp(join(tmpdir(), "corral-footprint-"));
try {
  const plain = envFor("source");
  wallMs(["-e", "0"], plain);
  const nodeE0 = median(Array.from({ length: runs }, () => wallMs(["-e", "0"], plain)));
  const version: Partial<Record<Mode, number>> = {};
  for (const mode of modes) {
    wallMs([corralBin, "--version"], envFor(mode));
    version[mode] = median(
      Array.from({ length: runs }, () => wallMs([corralBin, "--version"], envFor(mode))),
    );
  }
  const bare = await idleBareNode();
  const idle: Partial<Record<Mode, Idle>> = {};
  const demo: Partial<Record<Mode, number>> = {};
  for (const mode of modes) {
    idle[mode] = await idleFootprint(mode, root);
    if (!values["skip-demo"]) demo[mode] = await demoStartup(mode, root);
  }

  const mark = (ok: boolean) => (ok ? "meets" : "MISSES");
  console.log(
    `\ncorral footprint (node ${process.version}, ${runs} runs for times, RSS after ${values.idle} idle)\n`,
  );
  console.log(
    `${"".padEnd(34)}${"built (dist/)".padEnd(40)}${"from source (tsx)".padEnd(40)}baseline / target`,
  );
  const row = (label: string, built: string, source: string, tail: string) =>
    console.log(`${label.padEnd(34)}${built.padEnd(40)}${source.padEnd(40)}${tail}`);
  const both = <T>(of: Partial<Record<Mode, T>>, show: (value: T) => string): [string, string] => [
    of.built === undefined ? "—" : show(of.built),
    of.source === undefined ? "—" : show(of.source),
  ];
  const target = (value: number | undefined, limit: number, unit: string) =>
    value === undefined ? "" : `target ≤ ${limit}${unit}: ${mark(value <= limit)}`;
  row(
    "corral --version (median)",
    ...both(version, (ms) => `${ms.toFixed(0)} ms = ${(ms / nodeE0).toFixed(2)}× node -e 0`),
    `node -e 0: ${nodeE0.toFixed(0)} ms; ${target(version.built === undefined ? undefined : version.built / nodeE0, 3, "×")}`,
  );
  row(
    "idle controller RSS",
    ...both(idle, (m) => mib(m.controller)),
    target(idle.built?.controller.rss, 100, " MiB"),
  );
  row("idle agent RSS", ...both(idle, (m) => mib(m.agent)), target(idle.built?.agent.rss, 60, " MiB"));
  row(
    `  with ${defaults.agent.nodeFlags.join(" ")}`,
    ...both(idle, (m) => mib(m.agentWithFlags)),
    target(idle.built?.agentWithFlags.rss, 60, " MiB"),
  );
  row("bare idle node RSS", mib(bare), "", "(node itself, nothing loaded)");
  row("demo start-up (until up)", ...both(demo, (ms) => `${(ms / 1000).toFixed(2)} s`), "");
  mkdirSync(join(repo, ".bench-out"), { recursive: true });
  writeFileSync(
    join(repo, ".bench-out", "footprint.json"),
    `${JSON.stringify({ node: process.version, runs, idle: values.idle, nodeE0Ms: nodeE0, versionMs: version, idleRss: idle, bareNode: bare, demoStartupMs: demo }, null, 2)}\n`,
  );
} finally {
  await rm(root, { recursive: true, force: true });
}
