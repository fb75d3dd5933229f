/**
 * The real controller for the detection bench, in a process of its own, with corral's default liveness
 * and keepalive settings. It makes a join token for the agents, follows its own event feed and reports
 * every node status change (node name, new status, when) to the parent over IPC.
 *
 *   controller.ts <data dir> <uses>
 */
import { resolveControllerConfig } from "../../src/controller/config.ts";
import { Controller } from "../../src/controller/controller.ts";
import { createLogger } from "../../src/observability/logger.ts";

const [dataDir, usesText] = process.argv.slice(2);
if (dataDir === undefined || usesText === undefined)
  throw new Error("usage: controller.ts <data dir> <uses>");
const config = resolveControllerConfig(
  {
    node: { name: "bench-controller" },
    http: { address: "127.0.0.1:0" },
    grpcBridge: { address: "127.0.0.1:0" },
    web: { address: "127.0.0.1:0" },
    shutdownGrace: "1s",
  },
  dataDir,
  { dataDir },
  "detection bench",
);
const controller = await Controller.start(
  config,
  createLogger({ level: process.env.CORRAL_BENCH_LOG ?? "warn", name: "bench-controller" }),
);
const { token } = await controller.context.tokens.create({
  role: "node",
  ttlMs: 3_600_000,
  uses: Number(usesText),
  description: "detection bench agents",
  createdBy: "detection bench",
  caFingerprint: controller.ca.fingerprint,
});
const stop = new AbortController();
const following = (async () => {
  for await (const event of controller.context.feed.watch({ kinds: ["node"], signal: stop.signal })) {
    const node = event.kind === "node" ? event.node : undefined;
    if (node === undefined || event.previous?.status === node.status) continue;
    process.send?.({ status: { name: node.name, to: node.status, at: Date.now() } });
  }
})().catch(() => undefined);
process.send?.({
  ready: { cluster: controller.addresses.cluster, token, caPem: controller.ca.certificatePem },
});
process.on("message", async (message: { stop?: boolean }) => {
  if (!message.stop) return;
  stop.abort();
  await following;
  await controller.close();
  process.exit(0);
});
process.on("disconnect", () => process.exit(0));
