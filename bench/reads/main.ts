/**
 * Reads from memory (issue #21), each figure beside a same-run baseline on the same stack:
 *
 *   1. corral.v1.NodesService/GetNode on the real controller with 1 000 nodes, against the same echo
 *      through corral's adapter (bench/rpc-baseline's server (b)), at concurrency 1 and 64: server CPU
 *      per call and rate. Target: GetNode ≤ 1.3× the echo's CPU per call at both.
 *   2. NodesService/ListNodes and NanoPing HubServerService/getNodes filtered on `rack=r7` over 10 000
 *      nodes (100 racks, so 100 nodes per answer), against grpc.health.v1.Health/Check on the same
 *      controller: queries per second and p50. Targets: ≥ 2 000 q/s and ≥ 0.5× Health/Check's rate.
 *
 * Servers run in child processes of their own; this process is the one grpc-js client (raw bytes, no
 * decoding). Both share this machine's cores: compare ratios, not absolute figures. Slices are taken
 * round-robin so a burst of outside load hits every target alike; ratios are the median of per-round
 * ratios, with their range.
 *
 *   npm run bench:reads            CORRAL_BENCH_NODES=1000 for a quick run (default 10000)
 */
import { create, fromBinary, toBinary } from "@bufbuild/protobuf";
import * as grpc from "@grpc/grpc-js";
import {
  GetNodeRequestSchema,
  GetNodeResponseSchema,
  ListNodesRequestSchema,
  ListNodesResponseSchema,
} from "../../src/gen/corral/v1/nodes_pb.ts";
import { GetNodesRequestSchema, GetNodesResponseSchema } from "../../src/gen/hub_server_pb.ts";
import { sumSlices } from "../common/slice-summary.ts";
import { startChild } from "../rpc-baseline/child.ts";
import { EchoRequestSchema } from "../rpc-baseline/gen/echo_pb.ts";
import { raw, runUnary, type Slice } from "../rpc-baseline/load.ts";
import { startProbedController } from "./probed-child.ts";

const listNodes = Number(process.env.CORRAL_BENCH_NODES ?? "10000");
const getNodes = Number(process.env.CORRAL_BENCH_GET_NODES ?? "1000");
const racks = 100;
const rounds = Number(process.env.CORRAL_BENCH_ROUNDS ?? "5");
const sliceMs = 1_000;
const warmupMs = 1_500;
/** `get`, `list` or both (default): which part to run, e.g. to profile one. */
const parts = (process.env.CORRAL_BENCH_PARTS ?? "get,list").split(",");

interface Target {
  readonly name: string;
  readonly client: grpc.Client;
  readonly pid: number;
  readonly path: string;
  readonly requests: readonly Buffer[];
}

function once(client: grpc.Client, path: string, request: Buffer): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    client.makeUnaryRequest(path, raw, raw, request, (error, response) => {
      if (error || response === undefined) reject(error ?? new Error(`${path}: no response`));
      else resolve(response);
    });
  });
}

/** Every target measured in turn, round by round, after a warm-up each. */
async function compare(targets: readonly Target[], concurrency: number): Promise<Map<string, Slice[]>> {
  const slices = new Map<string, Slice[]>(targets.map((t) => [t.name, []]));
  for (const t of targets)
    await runUnary(t.client, t.path, t.requests, concurrency, t.pid, {
      settleMs: warmupMs,
      measureMs: 0,
      maxCount: 1e9,
    });
  for (let round = 0; round < rounds; round++) {
    for (let i = 0; i < targets.length; i++) {
      const t = targets[(round + i) % targets.length] as Target;
      const slice = await runUnary(t.client, t.path, t.requests, concurrency, t.pid, {
        settleMs: 100,
        measureMs: sliceMs,
        maxCount: 200_000,
      });
      slices.get(t.name)?.push(slice);
    }
  }
  return slices;
}

function median(values: readonly number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = sorted.length >> 1;
  return sorted.length % 2 === 1
    ? (sorted[mid] as number)
    : ((sorted[mid - 1] as number) + (sorted[mid] as number)) / 2;
}

const cpuPerOp = (s: Slice) => (s.serverCpuUs ?? Number.NaN) / Math.max(1, s.count);
const rate = (s: Slice) => s.count / s.seconds;
const fmt = (n: number, digits = 2) => (Number.isFinite(n) ? n.toFixed(digits) : "n/a");

function ratioLine(label: string, a: Slice[], b: Slice[], f: (s: Slice) => number, target: string): string {
  const ratios = a.map((s, i) => f(s) / f(b[i] as Slice));
  return `  ${label.padEnd(44)} ${fmt(median(ratios))}× (range ${fmt(Math.min(...ratios))}–${fmt(Math.max(...ratios))})  target ${target}`;
}

function row(name: string, slices: Slice[]): string {
  const totals = sumSlices(slices);
  return `  ${name.padEnd(44)} ${fmt(totals.rate, 0).padStart(7)} calls/s  p50 ${fmt(totals.p50Ms ?? Number.NaN, 3)} ms  p99 ${fmt(totals.p99Ms ?? Number.NaN, 3)} ms  server CPU ${fmt(totals.serverCpuUsPerOp ?? Number.NaN, 1)} µs/call  errors ${slices.reduce((n, s) => n + s.errors, 0)}`;
}

const connect = (address: string) => new grpc.Client(address, grpc.credentials.createInsecure());

console.log(
  `bench:reads — ${rounds} rounds of ${sliceMs} ms slices; load and servers share ${(await import("node:os")).cpus().length} cores`,
);

// ---- 1. GetNode vs echo ----
if (parts.includes("get")) {
  const echo = await startChild(new URL("../rpc-baseline/servers/adapter-server.ts", import.meta.url));
  const controller = await startProbedController(getNodes, racks);
  const echoRequest = Buffer.from(
    toBinary(EchoRequestSchema, create(EchoRequestSchema, { payload: new Uint8Array(100).fill(0x62) })),
  );
  const targets: Target[] = [
    {
      name: "echo through the adapter",
      client: connect(echo.target.address),
      pid: echo.target.pid,
      path: "/bench.v1.EchoService/Echo",
      requests: [echoRequest],
    },
    {
      name: `GetNode, ${getNodes} nodes`,
      client: connect(controller.address),
      pid: controller.pid,
      path: "/corral.v1.NodesService/GetNode",
      requests: controller.nodeIds.map((node) =>
        Buffer.from(toBinary(GetNodeRequestSchema, create(GetNodeRequestSchema, { node }))),
      ),
    },
  ];
  const last = controller.nodeIds.at(-1);
  const answer = fromBinary(
    GetNodeResponseSchema,
    await once(
      targets[1]?.client as grpc.Client,
      targets[1]?.path as string,
      targets[1]?.requests.at(-1) as Buffer,
    ),
  );
  if (answer.node?.id !== last) throw new Error(`GetNode(${last}) answered ${answer.node?.id}`);
  for (const concurrency of [1, 64]) {
    const slices = await compare(targets, concurrency);
    const [echoSlices, getSlices] = targets.map((t) => slices.get(t.name) as Slice[]) as [Slice[], Slice[]];
    console.log(`\nGetNode vs echo, concurrency ${concurrency}`);
    console.log(row(targets[0]?.name as string, echoSlices));
    console.log(row(targets[1]?.name as string, getSlices));
    console.log(ratioLine("GetNode / echo, server CPU per call", getSlices, echoSlices, cpuPerOp, "≤ 1.3×"));
    console.log(ratioLine("GetNode / echo, rate", getSlices, echoSlices, rate, "(higher is better)"));
  }
  for (const t of targets) t.client.close();
  await echo.target.close();
  await controller.close();
}

// ---- 2. filtered lists vs Health/Check ----
if (parts.includes("list")) {
  const started = performance.now();
  const controller = await startProbedController(listNodes, racks);
  console.log(`\n${listNodes} nodes registered in ${fmt((performance.now() - started) / 1000, 1)} s`);
  const client = connect(controller.address);
  const list = Buffer.from(
    toBinary(
      ListNodesRequestSchema,
      create(ListNodesRequestSchema, {
        filter: { metadata: { rack: { value: { case: "stringValue", value: "r7" } } } },
      }),
    ),
  );
  const hub = Buffer.from(
    toBinary(
      GetNodesRequestSchema,
      create(GetNodesRequestSchema, {
        metadataFilters: { rack: { value: { case: "stringValue", value: "r7" } } },
      }),
    ),
  );
  const expected = Math.ceil((listNodes - 7) / racks);
  const listed = fromBinary(
    ListNodesResponseSchema,
    await once(client, "/corral.v1.NodesService/ListNodes", list),
  );
  const hubbed = fromBinary(
    GetNodesResponseSchema,
    await once(client, "/nanopinggrpc.hub.HubServerService/getNodes", hub),
  );
  if (listed.nodes.length !== expected || hubbed.nodes.length !== expected)
    throw new Error(`rack=r7 matched ${listed.nodes.length} / ${hubbed.nodes.length} nodes, not ${expected}`);
  const targets: Target[] = [
    {
      name: "Health/Check (same server)",
      client,
      pid: controller.pid,
      path: "/grpc.health.v1.Health/Check",
      requests: [Buffer.alloc(0)],
    },
    {
      name: `ListNodes rack=r7 (${expected} of ${listNodes})`,
      client,
      pid: controller.pid,
      path: "/corral.v1.NodesService/ListNodes",
      requests: [list],
    },
    {
      name: `NanoPing getNodes rack=r7 (${expected} of ${listNodes})`,
      client,
      pid: controller.pid,
      path: "/nanopinggrpc.hub.HubServerService/getNodes",
      requests: [hub],
    },
  ];
  const concurrency = 16;
  const slices = await compare(targets, concurrency);
  const [health, lists, hubs] = targets.map((t) => slices.get(t.name) as Slice[]) as [
    Slice[],
    Slice[],
    Slice[],
  ];
  console.log(`\nfiltered reads vs Health/Check, concurrency ${concurrency}`);
  for (const t of targets) console.log(row(t.name, slices.get(t.name) as Slice[]));
  console.log(ratioLine("ListNodes / Health/Check, rate", lists, health, rate, "≥ 0.5× and ≥ 2 000 q/s"));
  console.log(ratioLine("getNodes / Health/Check, rate", hubs, health, rate, "≥ 0.5× and ≥ 2 000 q/s"));
  client.close();
  await controller.close();
}
process.exit(0);
