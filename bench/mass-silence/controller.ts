/**
 * The real controller in a process of its own, on a data dir the bench seeded with N ready nodes that
 * will never heartbeat: the fleet went silent at once (a rack lost power, a split, agents slow to come
 * back after a restart). Liveness is shortened so the storm comes seconds after start (the prober is up by then): interval 3s,
 * suspect after 2 missed, down 2s later. It follows its own event feed — what every watcher sees — and
 * reports each batch of status changes it announced to the parent over IPC.
 *
 *   controller.ts <data dir>
 */
import { resolveControllerConfig } from "../../src/controller/config.ts";
import { Controller } from "../../src/controller/controller.ts";
import { createLogger } from "../../src/observability/logger.ts";

const [dataDir] = process.argv.slice(2);
if (dataDir === undefined) throw new Error("usage: controller.ts <data dir>");
const send = (message: unknown) => process.send?.(message);
const config = resolveControllerConfig(
  {
    node: { name: "bench-controller" },
    http: { address: "127.0.0.1:0" },
    grpcBridge: { address: "127.0.0.1:0" },
    web: { address: "127.0.0.1:0" },
    shutdownGrace: "1s",
    liveness: {
      minInterval: "3s",
      maxHeartbeatsPerSecond: 1_000_000,
      suspectAfterMissed: 2,
      downAfter: "2s",
    },
  },
  dataDir,
  { dataDir },
  "mass-silence bench",
);
const controller = await Controller.start(
  config,
  createLogger({ level: process.env.CORRAL_BENCH_LOG ?? "warn", name: "bench-controller" }),
);
const stop = new AbortController();
const announced = (async () => {
  let batch: Record<string, number> = {};
  let flushing = false;
  for await (const event of controller.context.feed.watch({ kinds: ["node"], signal: stop.signal })) {
    const node = event.kind === "node" ? event.node : undefined;
    if (node === undefined || event.previous?.status === node.status) continue;
    batch[node.status] = (batch[node.status] ?? 0) + 1;
    // One message per turn of the loop: the events of one store batch arrive together.
    if (flushing) continue;
    flushing = true;
    setTimeout(() => {
      send({ announced: batch, at: Date.now() });
      batch = {};
      flushing = false;
    }, 0);
  }
})().catch(() => undefined);
send({ ready: { bridge: controller.addresses.bridge, pid: process.pid, at: Date.now() } });
process.on("message", async (message: { stop?: boolean }) => {
  if (!message.stop) return;
  stop.abort();
  await announced;
  await controller.close();
  process.exit(0);
});
process.on("disconnect", () => process.exit(0));
