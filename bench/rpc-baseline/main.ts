/**
 * RPC baseline (see STACK.md): the server CPU that corral's gRPC stack spends per call and per streamed
 * message, next to plain grpc-js, in one run.
 *
 *   (a) plain grpc-js + @grpc/proto-loader echo server
 *   (b) the same echo through corral's adapter (RpcServer + protobuf-es + Connect-style handlers)
 *   (c) corral.v1.NodesService/GetNode with 1 000 nodes (corral-target.ts)
 *
 * Each server runs in a child process of its own; this process is the one grpc-js client for all
 * (load.ts). Server CPU comes from /proc/<pid>/stat around each measuring window. The machine is
 * shared and noisy, so each phase warms every target up, then measures them in short slices taken in
 * turn (round-robin, the order rotating each round): a burst of load from elsewhere hits all targets
 * alike. Ratios are the median over rounds of the ratio within each round.
 *
 *   npm run bench:rpc [-- --quick] [-- --only unary-c1,stream-100]
 *
 * Results also go to .bench-out/rpc-baseline.json.
 */
import { mkdirSync, writeFileSync } from "node:fs";
import os from "node:os";
import { create, fromBinary, toBinary } from "@bufbuild/protobuf";
import * as grpc from "@grpc/grpc-js";
import { GetNodeRequestSchema, GetNodeResponseSchema } from "../../src/gen/corral/v1/nodes_pb.ts";
import { sumSlices } from "../common/slice-summary.ts";
import { type BenchTarget, startChild } from "./child.ts";
import { startCorralTarget } from "./corral-target.ts";
import { EchoRequestSchema, EchoResponseSchema, StreamRequestSchema } from "./gen/echo_pb.ts";
import { raw, runStreams, runUnary, type Slice, type Window } from "./load.ts";

const quick = process.argv.includes("--quick");
/** `--only unary-c64,stream-1`: run only these phases (ids as in `phases` below). */
const only = process.argv.includes("--only")
  ? process.argv[process.argv.indexOf("--only") + 1]?.split(",")
  : undefined;

const timing = quick
  ? { warmupMs: 250, rounds: 2, sliceMs: 300, settleMs: 100, maxCalls: 20_000, maxMessages: 1_000_000 }
  : { warmupMs: 2_000, rounds: 5, sliceMs: 1_000, settleMs: 200, maxCalls: 200_000, maxMessages: 5_000_000 };
const payloadBytes = 100;
const streamMessageBytes = 32;
/** Messages asked for per stream; a stream still open when its window closes is cancelled. */
const messagesPerStream = 20_000;
const targets = { unaryCpuRatio: 1.3, streamCpuRatio: 1.5 };

type TargetId = "a" | "b" | "c";
const targetNames: Record<TargetId, string> = {
  a: "grpc-js + proto-loader",
  b: "grpc-js + protobuf-es adapter",
  c: "corral NodesService/GetNode",
};

interface Phase {
  readonly id: string;
  readonly title: string;
  readonly kind: "unary" | "stream";
  /** Calls in flight (unary) or streams open (stream). */
  readonly concurrency: number;
  readonly targets: readonly TargetId[];
}

const phases: readonly Phase[] = [
  { id: "unary-c1", title: "unary, concurrency 1", kind: "unary", concurrency: 1, targets: ["a", "b", "c"] },
  {
    id: "unary-c64",
    title: "unary, concurrency 64",
    kind: "unary",
    concurrency: 64,
    targets: ["a", "b", "c"],
  },
  { id: "stream-1", title: "server stream, 1 stream", kind: "stream", concurrency: 1, targets: ["a", "b"] },
  {
    id: "stream-100",
    title: "server stream, 100 streams",
    kind: "stream",
    concurrency: 100,
    targets: ["a", "b"],
  },
];

interface PhaseResult {
  readonly phase: string;
  readonly target: TargetId;
  /** Calls completed or messages received, all slices together. */
  readonly count: number;
  readonly seconds: number;
  /** Calls or messages per second. */
  readonly rate: number;
  readonly p50Ms: number | null;
  readonly p99Ms: number | null;
  /** Server CPU per call or message; null where /proc/<pid>/stat cannot be read. */
  readonly serverCpuUsPerOp: number | null;
  /** The same, slice by slice (one per round). */
  readonly serverCpuUsPerOpByRound: readonly (number | null)[];
  /** Server and client CPU as a share of one core. */
  readonly serverCpuPct: number | null;
  readonly clientCpuPct: number;
  readonly errors: number;
}

// ---- targets ----

interface Running {
  readonly id: TargetId;
  readonly target: BenchTarget;
  readonly client: grpc.Client;
  readonly label: string;
  readonly unaryPath: string;
  readonly unaryRequests: readonly Buffer[];
}

const echoPath = "/bench.v1.EchoService/Echo";
const streamPath = "/bench.v1.EchoService/Stream";
const getNodePath = "/corral.v1.NodesService/GetNode";

function unaryOnce(client: grpc.Client, path: string, request: Buffer): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    client.makeUnaryRequest(path, raw, raw, request, (error, response) => {
      if (error || response === undefined) reject(error ?? new Error(`${path}: no response`));
      else resolve(response);
    });
  });
}

async function startTargets(): Promise<Running[]> {
  const payload = new Uint8Array(payloadBytes).fill(0x62);
  const echoRequest = Buffer.from(toBinary(EchoRequestSchema, create(EchoRequestSchema, { payload })));
  const [a, b, c] = await Promise.all([
    startChild(new URL("./servers/plain-server.ts", import.meta.url)),
    startChild(new URL("./servers/adapter-server.ts", import.meta.url)),
    startCorralTarget(),
  ]);
  const connect = (target: BenchTarget) => new grpc.Client(target.address, grpc.credentials.createInsecure());
  const echo = { label: "", unaryPath: echoPath, unaryRequests: [echoRequest] };
  const running: Running[] = [
    { id: "a", target: a.target, client: connect(a.target), ...echo },
    { id: "b", target: b.target, client: connect(b.target), ...echo },
    {
      id: "c",
      target: c,
      client: connect(c),
      label: c.label,
      unaryPath: getNodePath,
      unaryRequests: c.nodeIds.map((node) =>
        Buffer.from(toBinary(GetNodeRequestSchema, create(GetNodeRequestSchema, { node }))),
      ),
    },
  ];
  // Each target must answer correctly before it is measured.
  for (const r of running) {
    const response = await unaryOnce(r.client, r.unaryPath, r.unaryRequests.at(-1) as Buffer);
    if (r.id === "c") {
      const id = c.nodeIds.at(-1);
      const node = fromBinary(GetNodeResponseSchema, response).node;
      if (node?.id !== id) throw new Error(`(c) GetNode(${id}) answered ${node?.id}`);
    } else if (Buffer.compare(fromBinary(EchoResponseSchema, response).payload, payload) !== 0) {
      throw new Error(`(${r.id}) did not echo the payload`);
    }
  }
  return running;
}

// ---- phases ----

const streamRequest = Buffer.from(
  toBinary(
    StreamRequestSchema,
    create(StreamRequestSchema, { count: messagesPerStream, size: streamMessageBytes }),
  ),
);

function load(phase: Phase, r: Running, window: Window): Promise<Slice> {
  return phase.kind === "unary"
    ? runUnary(r.client, r.unaryPath, r.unaryRequests, phase.concurrency, r.target.pid, window)
    : runStreams(r.client, streamPath, streamRequest, phase.concurrency, r.target.pid, window);
}

async function runPhase(phase: Phase, running: ReadonlyMap<TargetId, Running>): Promise<PhaseResult[]> {
  const ids = phase.targets;
  const maxCount = Math.ceil((phase.kind === "unary" ? timing.maxCalls : timing.maxMessages) / timing.rounds);
  const slices = new Map<TargetId, Slice[]>(ids.map((id) => [id, []]));
  for (const id of ids) {
    const warm = await load(phase, running.get(id) as Running, {
      settleMs: timing.warmupMs,
      measureMs: 0,
      maxCount,
    });
    (slices.get(id) as Slice[]).push(warm);
  }
  for (let round = 0; round < timing.rounds; round++) {
    for (let i = 0; i < ids.length; i++) {
      const id = ids[(round + i) % ids.length] as TargetId;
      const window = { settleMs: timing.settleMs, measureMs: timing.sliceMs, maxCount };
      (slices.get(id) as Slice[]).push(await load(phase, running.get(id) as Running, window));
    }
  }
  return ids.map((id) => summarize(phase, id, slices.get(id) as Slice[]));
}

function summarize(phase: Phase, target: TargetId, slices: readonly Slice[]): PhaseResult {
  const measured = slices.filter((s) => s.seconds > 0);
  const totals = sumSlices(measured);
  return {
    phase: phase.id,
    target,
    count: totals.count,
    seconds: totals.seconds,
    rate: totals.rate,
    p50Ms: totals.p50Ms,
    p99Ms: totals.p99Ms,
    serverCpuUsPerOp: totals.serverCpuUsPerOp,
    serverCpuUsPerOpByRound: measured.map((s) =>
      s.serverCpuUs === null || s.count === 0 ? null : s.serverCpuUs / s.count,
    ),
    serverCpuPct: totals.serverCpuPct,
    clientCpuPct: totals.clientCpuPct,
    errors: slices.reduce((total, s) => total + s.errors, 0),
  };
}

// ---- report ----

interface Ratio {
  readonly name: string;
  readonly phase: string;
  /** Median over rounds of the ratio within each round. */
  readonly value: number | null;
  readonly byRound: readonly (number | null)[];
  readonly target: number | null;
  readonly verdict: "PASS" | "MISS" | "n/a";
}

function median(values: readonly number[]): number | null {
  if (values.length === 0) return null;
  const sorted = [...values].sort((x, y) => x - y);
  const middle = sorted.length >> 1;
  return sorted.length % 2 === 1
    ? (sorted[middle] as number)
    : ((sorted[middle - 1] as number) + (sorted[middle] as number)) / 2;
}

function ratios(results: readonly PhaseResult[]): Ratio[] {
  const byRound = (phase: string, target: TargetId) =>
    results.find((r) => r.phase === phase && r.target === target)?.serverCpuUsPerOpByRound ?? [];
  const ratio = (
    name: string,
    phase: string,
    over: TargetId,
    under: TargetId,
    target: number | null,
  ): Ratio => {
    const top = byRound(phase, over);
    const bottom = byRound(phase, under);
    const rounds = top.map((t, i) => {
      const b = bottom[i];
      return t === null || b === null || b === undefined || b === 0 ? null : t / b;
    });
    const value = median(rounds.filter((r): r is number => r !== null));
    const verdict = value === null || target === null ? "n/a" : value <= target ? "PASS" : "MISS";
    return { name, phase, value, byRound: rounds, target, verdict };
  };
  return [
    ratio("b/a CPU per unary call, concurrency 1", "unary-c1", "b", "a", targets.unaryCpuRatio),
    ratio("b/a CPU per unary call, concurrency 64", "unary-c64", "b", "a", targets.unaryCpuRatio),
    ratio("b/a CPU per streamed message, 1 stream", "stream-1", "b", "a", targets.streamCpuRatio),
    ratio("b/a CPU per streamed message, 100 streams", "stream-100", "b", "a", targets.streamCpuRatio),
    ratio("c/b CPU per unary call, concurrency 1", "unary-c1", "c", "b", null),
    ratio("c/b CPU per unary call, concurrency 64", "unary-c64", "c", "b", null),
  ].filter((r) => r.value !== null || results.some((p) => p.phase === r.phase));
}

const fmt = (value: number | null, digits = 1): string =>
  value === null
    ? "n/a"
    : value.toLocaleString("en-US", { minimumFractionDigits: digits, maximumFractionDigits: digits });

function printTable(results: readonly PhaseResult[], running: readonly Running[]): void {
  const header = ["phase", "", "rate", "p50 ms", "p99 ms", "server CPU", "client CPU", "CPU µs/op", "errors"];
  const rows = results.map((r) => {
    const phase = phases.find((p) => p.id === r.phase) as Phase;
    const perOp = r.serverCpuUsPerOp;
    return [
      phase.title,
      `(${r.target})`,
      `${fmt(r.rate, 0)} ${phase.kind === "unary" ? "RPS" : "msg/s"}`,
      fmt(r.p50Ms, 3),
      fmt(r.p99Ms, 3),
      `${fmt(r.serverCpuPct, 0)}%`,
      `${fmt(r.clientCpuPct, 0)}%`,
      fmt(perOp, perOp !== null && perOp < 20 ? 2 : 1),
      String(r.errors),
    ];
  });
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((row) => (row[i] as string).length)));
  const line = (cells: readonly string[]) =>
    cells
      .map((cell, i) => (i < 2 ? cell.padEnd(widths[i] as number) : cell.padStart(widths[i] as number)))
      .join("  ");
  for (const r of running) console.log(`(${r.id}) ${targetNames[r.id]}${r.label ? ` — ${r.label}` : ""}`);
  console.log();
  console.log(line(header));
  for (const [i, row] of rows.entries()) {
    if (i > 0 && results[i]?.phase !== results[i - 1]?.phase) console.log();
    console.log(line(row));
  }
}

function printRatios(list: readonly Ratio[], cLabel: string): void {
  console.log("\nserver CPU ratios (median over rounds; each round's ratio in brackets)");
  const width = Math.max(...list.map((r) => r.name.length));
  for (const r of list) {
    const value = r.value === null ? "n/a" : `${r.value.toFixed(2)}×`;
    const rounds = `[${r.byRound.map((x) => (x === null ? "n/a" : x.toFixed(2))).join(" ")}]`;
    const target =
      r.target === null
        ? `target: as low as the work allows (${cLabel})`
        : `target ≤ ${r.target.toFixed(1)}×  ${r.verdict}`;
    console.log(`  ${r.name.padEnd(width)}  ${value.padStart(6)}  ${target}  ${rounds}`);
  }
}

// ---- main ----

async function main(): Promise<void> {
  console.log(
    `corral rpc-baseline${quick ? " --quick" : ""}: Node ${process.version}, ${os.cpus().length} CPUs; ` +
      `per phase and target: warm-up ${timing.warmupMs / 1000} s, then ${timing.rounds} rounds of ` +
      `${timing.sliceMs / 1000} s (after ${timing.settleMs / 1000} s to settle) taken in turn, at most ` +
      `${timing.maxCalls.toLocaleString("en-US")} calls / ${timing.maxMessages.toLocaleString("en-US")} messages ` +
      `in all; ${payloadBytes}-byte unary payloads, ${streamMessageBytes}-byte stream messages\n`,
  );
  const running = await startTargets();
  const byId = new Map(running.map((r) => [r.id, r]));
  const results: PhaseResult[] = [];
  try {
    for (const phase of phases) {
      if (only && !only.includes(phase.id)) continue;
      results.push(...(await runPhase(phase, byId)));
    }
  } finally {
    for (const r of running) r.client.close();
    await Promise.all(running.map((r) => r.target.close()));
  }

  const cLabel = byId.get("c")?.label || "the real controller";
  const list = ratios(results);
  printTable(results, running);
  printRatios(list, cLabel);

  const out = new URL("../../.bench-out/", import.meta.url);
  mkdirSync(out, { recursive: true });
  const file = new URL("rpc-baseline.json", out);
  const report = {
    date: new Date().toISOString(),
    node: process.version,
    cpus: os.cpus().length,
    quick,
    timing,
    payloadBytes,
    streamMessageBytes,
    targets: Object.fromEntries(
      running.map((r) => [r.id, { name: targetNames[r.id], label: r.label || undefined }]),
    ),
    phases,
    results,
    ratios: list,
  };
  writeFileSync(file, `${JSON.stringify(report, null, 2)}\n`);
  console.log(`\nwrote ${file.pathname}`);
  const errors = results.reduce((sum, r) => sum + r.errors, 0);
  if (errors > 0) {
    console.error(`${errors} calls or streams failed`);
    process.exitCode = 1;
  }
}

await main();
