/**
 * Watch streams (issue #21): S streams (default 2 000) opened from this one client process against the
 * real controller (its own process, SQLite, N nodes, default 1 000), for each kind of watch:
 *
 *   watch-nodes   corral.v1.NodesService/WatchNodes from revision 0 (a snapshot of every node, then changes)
 *   stream-nodes  NanoPing HubServerService/streamNodes (every node in one message, then changes)
 *   tui-nodes     distributed_llm.TUIService/StreamUpdates ["nodes"] (every node in one message per change)
 *   health        grpc.health.v1.Health/Watch — the baseline: the same stack with no node list
 *
 * Printed per kind: controller CPU per stream opened, RSS and heap per open stream over idle (after a
 * GC), RSS and heap after all are cancelled vs idle, the controller's longest event-loop stall during the
 * mass cancel (perf_hooks.monitorEventLoopDelay inside the controller, read over IPC), and with 100
 * streams open, one RemoveNode's latency until every stream has seen it, beside the same RemoveNode with
 * no stream open. Load and controller share this machine's cores: compare within a run.
 *
 *   npm run bench:streams     CORRAL_BENCH_NODES=1000 CORRAL_BENCH_STREAMS=2000 CORRAL_BENCH_KINDS=watch-nodes,health
 */
import { setTimeout as sleep } from "node:timers/promises";
import { create, fromBinary, toBinary } from "@bufbuild/protobuf";
import * as grpc from "@grpc/grpc-js";
import {
  NodeEventType,
  RemoveNodeRequestSchema,
  WatchNodesRequestSchema,
  WatchNodesResponseSchema,
} from "../../src/gen/corral/v1/nodes_pb.ts";
import { GetNodesRequestSchema } from "../../src/gen/hub_server_pb.ts";
import { UpdateStreamRequestSchema } from "../../src/gen/node_pb.ts";
import { startProbedController } from "../reads/probed-child.ts";
import { processCpuUs, raw } from "../rpc-baseline/load.ts";

const nodes = Number(process.env.CORRAL_BENCH_NODES ?? "1000");
const streams = Number(process.env.CORRAL_BENCH_STREAMS ?? "2000");
const kinds = (process.env.CORRAL_BENCH_KINDS ?? "health,watch-nodes,stream-nodes,tui-nodes").split(",");
const openBatch = 100;
const perChannel = 100;
const deadlineMs = 120_000;

interface Kind {
  readonly path: string;
  readonly request: Buffer;
  /** True once a stream has everything it gets on opening (its snapshot). */
  readonly opened: (message: Buffer, count: number) => boolean;
}

const kindsById: Record<string, Kind> = {
  "watch-nodes": {
    path: "/corral.v1.NodesService/WatchNodes",
    request: Buffer.from(toBinary(WatchNodesRequestSchema, create(WatchNodesRequestSchema, {}))),
    // SYNCED carries no node: a short message; decode only those.
    opened: (message) =>
      message.length < 32 && fromBinary(WatchNodesResponseSchema, message).type === NodeEventType.SYNCED,
  },
  "stream-nodes": {
    path: "/nanopinggrpc.hub.HubServerService/streamNodes",
    request: Buffer.from(toBinary(GetNodesRequestSchema, create(GetNodesRequestSchema, {}))),
    opened: () => true,
  },
  "tui-nodes": {
    path: "/distributed_llm.TUIService/StreamUpdates",
    request: Buffer.from(
      toBinary(
        UpdateStreamRequestSchema,
        create(UpdateStreamRequestSchema, { updateTypes: ["nodes"], intervalSeconds: 3600 }),
      ),
    ),
    opened: () => true,
  },
  health: { path: "/grpc.health.v1.Health/Watch", request: Buffer.alloc(0), opened: () => true },
};

interface Open {
  readonly call: grpc.ClientReadableStream<Buffer>;
  messages: number;
  opened: boolean;
  /** Called on each message after opening. */
  onChange?: () => void;
}

function openStream(client: grpc.Client, kind: Kind): Promise<Open> {
  return new Promise((resolve, reject) => {
    const call = client.makeServerStreamRequest(kind.path, raw, raw, kind.request);
    const open: Open = { call, messages: 0, opened: false };
    call.on("data", (message: Buffer) => {
      open.messages++;
      if (!open.opened) {
        if (kind.opened(message, open.messages)) {
          open.opened = true;
          resolve(open);
        }
      } else open.onChange?.();
    });
    call.on("error", (error: grpc.ServiceError) => {
      if (error.code !== grpc.status.CANCELLED) reject(error);
    });
  });
}

async function openMany(channels: readonly grpc.Client[], kind: Kind, count: number): Promise<Open[]> {
  const opened: Open[] = [];
  for (let i = 0; i < count; i += openBatch) {
    const client = channels[Math.floor(i / perChannel)] as grpc.Client;
    const batch = await Promise.all(
      Array.from({ length: Math.min(openBatch, count - i) }, () => openStream(client, kind)),
    );
    opened.push(...batch);
  }
  return opened;
}

function unary(client: grpc.Client, path: string, request: Buffer): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    client.makeUnaryRequest(path, raw, raw, request, (error, response) => {
      if (error || response === undefined) reject(error ?? new Error(`${path}: no response`));
      else resolve(response);
    });
  });
}

const kib = (bytes: number) => `${(bytes / 1024).toFixed(1)} KiB`;
const mib = (bytes: number) => `${(bytes / 1024 ** 2).toFixed(1)} MiB`;

console.log(`bench:streams — ${nodes} nodes, ${streams} streams per kind, one client process`);
const controller = await startProbedController(nodes, 100);
let removable = [...controller.nodeIds];
const removeRequest = (node: string) =>
  Buffer.from(toBinary(RemoveNodeRequestSchema, create(RemoveNodeRequestSchema, { node })));

for (const id of kinds) {
  const kind = kindsById[id];
  if (kind === undefined) throw new Error(`unknown kind ${id}; one of ${Object.keys(kindsById).join(", ")}`);
  // HTTP/2 allows the controller's 256 streams per connection: 100 streams per channel, each its own
  // connection (a distinct option keeps grpc-js from sharing one); fresh channels per kind.
  const channels = Array.from(
    { length: Math.ceil(streams / perChannel) },
    (_, i) =>
      new grpc.Client(controller.address, grpc.credentials.createInsecure(), {
        "grpc.max_receive_message_length": 64 * 1024 ** 2,
        "bench.channel": `${id}-${i}`,
      }),
  );
  const client = channels[0] as grpc.Client;
  await unary(client, "/grpc.health.v1.Health/Check", Buffer.alloc(0));
  const idle = await controller.probe("gc");
  const cpu0 = processCpuUs(controller.pid) ?? Number.NaN;
  const t0 = performance.now();
  const open = await Promise.race([
    openMany(channels, kind, streams),
    sleep(deadlineMs).then(() => {
      throw new Error(`${id}: ${streams} streams not open after ${deadlineMs} ms`);
    }),
  ]);
  const openSeconds = (performance.now() - t0) / 1000;
  const openCpuUs = (processCpuUs(controller.pid) ?? Number.NaN) - cpu0;
  await sleep(500);
  const held = await controller.probe("gc");

  // One RemoveNode with 100 of these streams open (the rest cancelled first), against none open.
  const rest = open.splice(100);
  for (const s of rest) s.call.cancel();
  await sleep(1_000);
  let removeMs = Number.NaN;
  if (id !== "health") {
    const node = removable.pop() as string;
    const seen = Promise.all(
      open.map(
        (s) =>
          new Promise<void>((resolve) => {
            s.onChange = resolve;
          }),
      ),
    );
    const started = performance.now();
    await unary(client, "/corral.v1.NodesService/RemoveNode", removeRequest(node));
    await seen;
    removeMs = performance.now() - started;
  }
  await controller.probe("reset");
  for (const s of open) s.call.cancel();
  // The mass cancel: every stream of this kind that is still open, at once.
  await sleep(1_500);
  const cancel = await controller.probe("read");
  const after = await controller.probe("gc");
  // The same RemoveNode with no stream open: what the store write and the reply cost alone.
  const bare = removable.pop() as string;
  const bareStarted = performance.now();
  await unary(client, "/corral.v1.NodesService/RemoveNode", removeRequest(bare));
  const bareMs = performance.now() - bareStarted;
  for (const channel of channels) channel.close();

  console.log(`\n${id} (${kind.path})`);
  console.log(
    `  open ${streams}: ${openSeconds.toFixed(2)} s, controller CPU ${(openCpuUs / 1000 / streams).toFixed(3)} ms per stream`,
  );
  console.log(
    `  held: RSS ${mib(idle.rss)} idle → ${mib(held.rss)} open = ${kib((held.rss - idle.rss) / streams)} per stream; heap ${mib(idle.heapUsed)} → ${mib(held.heapUsed)} = ${kib((held.heapUsed - idle.heapUsed) / streams)} per stream`,
  );
  console.log(
    `  after cancel: RSS ${mib(after.rss)} (${((after.rss / idle.rss) * 100).toFixed(0)} % of idle), heap ${mib(after.heapUsed)} (${((after.heapUsed / idle.heapUsed) * 100).toFixed(0)} % of idle); longest stall during the mass cancel ${cancel.maxDelayMs.toFixed(1)} ms`,
  );
  if (id !== "health")
    console.log(
      `  RemoveNode seen by all of 100 open streams: ${removeMs.toFixed(1)} ms; the same RemoveNode with none open: ${bareMs.toFixed(1)} ms`,
    );
  removable = removable.filter((n) => n !== bare);
}
await controller.close();
process.exit(0);
