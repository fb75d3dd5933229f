/**
 * The real controller in a process of its own (fresh data dir, SQLite, loopback bridge on a free port),
 * with `count` nodes registered through the core before it reports ready: `rack` is a string `r<i % racks>`
 * so `rack=r7` matches count/racks nodes. Over IPC it answers `{ probe: "reset" | "read" }` with its
 * event-loop delay (max since the last reset, from `perf_hooks.monitorEventLoopDelay`), its RSS and heap,
 * after a GC when `--expose-gc` is on — bench-only figures, nothing of this is in the controller.
 */
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { monitorEventLoopDelay } from "node:perf_hooks";
import { resolveControllerConfig } from "../../src/controller/config.ts";
import { Controller } from "../../src/controller/controller.ts";
import { encodeNode } from "../../src/core/nodes/node-codec.ts";
import { nodeKey, nodeNameKey } from "../../src/core/nodes/node-keys.ts";
import { buildNodeRecord } from "../../src/core/nodes/node-record.ts";
import { createLogger } from "../../src/observability/logger.ts";
import { SqliteStore } from "../../src/store/sqlite/sqlite-store.ts";
import type { Op } from "../../src/store/types.ts";
import { reportReady } from "../rpc-baseline/child.ts";

const count = Number(process.argv[2] ?? "1000");
const racks = Number(process.argv[3] ?? "100");
const dataDir = await mkdtemp(join(tmpdir(), "corral-bench-reads-"));
const config = resolveControllerConfig(
  {
    http: { address: "127.0.0.1:0" },
    grpcBridge: { address: "127.0.0.1:0" },
    web: { address: "127.0.0.1:0" },
    // One client opens thousands of watches here on purpose (bench:streams).
    limits: { streamsPerConnection: 100_000, streamsPerPrincipal: 100_000 },
  },
  dataDir,
  { dataDir },
  "bench",
);
// Filed straight into the store before the controller starts, as a controller restarting over a large
// fleet finds them: registering them live would time the placement and liveness reactions to each new
// node (another part of #21), not the reads measured here.
const nodeIds: string[] = [];
{
  if (config.store.kind !== "sqlite") throw new Error("the bench controller uses SQLite");
  const store = await SqliteStore.open({ path: config.store.path });
  // Many nodes per txn: one commit (and fsync) each would make setting up 10 000 nodes take minutes.
  const batch = 64;
  for (let first = 0; first < count; first += batch) {
    const ops: Op[] = [];
    for (let i = first; i < Math.min(count, first + batch); i++) {
      const node = buildNodeRecord(
        {
          name: `node-${String(i).padStart(5, "0")}`,
          address: `10.${i >> 16}.${(i >> 8) & 255}.${i & 255}:7444`,
          status: "ready",
          services: ["LOGGING", "PIPELINES"],
          metadata: {
            rack: { kind: "string", value: `r${i % racks}` },
            zone: { kind: "string", value: `zone-${i % 3}` },
          },
          labels: { pool: i % 2 === 0 ? "gpu" : "cpu" },
          resources: {
            cpuCores: 16,
            memoryMb: 65_536,
            gpus: [{ name: "NVIDIA L4", memoryMb: 24_576, uuid: `GPU-${i}` }],
            maxLayers: 32,
            disks: [{ mount: "/", sizeBytes: 512 * 1024 ** 3 }],
          },
        },
        Date.now(),
      );
      ops.push({ type: "put", key: nodeKey(node.id), value: encodeNode(node) });
      ops.push({ type: "put", key: nodeNameKey(node.name), value: JSON.stringify({ id: node.id }) });
      nodeIds.push(node.id);
    }
    await store.commit({ ops });
  }
  await store.close();
}
const controller = await Controller.start(config, createLogger({ level: "warn" }));
const bridgePort = Number(
  controller.addresses.bridge.slice(controller.addresses.bridge.lastIndexOf(":") + 1),
);
const delay = monitorEventLoopDelay({ resolution: 5 });
delay.enable();
const gc = (globalThis as { gc?: () => void }).gc;
process.on("message", (message: { probe?: string; id?: number }) => {
  if (message.probe === undefined) return;
  if (message.probe === "remove") {
    // One RemoveNode through the core, timed here: the stream fan-out it causes runs on this loop.
    const started = performance.now();
    const id = nodeIds.pop();
    if (id === undefined) return;
    void controller.context.registry.remove(id).then(() => {
      // The removal is done once every stream has been handed its change: wait for the loop to drain.
      setImmediate(() => process.send?.({ id: message.id, removeMs: performance.now() - started }));
    });
    return;
  }
  if (message.probe === "gc") gc?.();
  const reply = {
    id: message.id,
    maxDelayMs: delay.max / 1e6,
    rss: process.memoryUsage().rss,
    heapUsed: process.memoryUsage().heapUsed,
    cpuUs: process.cpuUsage().user + process.cpuUsage().system,
  };
  if (message.probe === "reset" || message.probe === "gc") delay.reset();
  process.send?.(reply);
});
const stop = async () => {
  await controller.close();
  await rm(dataDir, { recursive: true, force: true });
  process.exit(0);
};
process.once("SIGTERM", () => void stop());
process.once("disconnect", () => void stop());
reportReady({ port: bridgePort, nodeIds });
