/**
 * The real controller, in a process of its own: `Controller.start` with its data in `<data dir>`, every
 * listener on 127.0.0.1 with a port from the kernel, and a join token good for `<uses>` nodes. It prints
 * its addresses and pid, and sends them (with the token and the CA) to the bench over IPC.
 *
 *   controller-server.ts <data dir> <uses> [log level]
 */

import { resolveControllerConfig } from "../../src/controller/config.ts";
import { Controller } from "../../src/controller/controller.ts";
import { createLogger } from "../../src/observability/logger.ts";
import { serveParent } from "./children.ts";

const [dataDir, usesText, level = "info"] = process.argv.slice(2);
if (dataDir === undefined || usesText === undefined) {
  throw new Error("usage: controller-server.ts <data dir> <uses> [log level]");
}
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
  "heartbeat bench",
);
const controller = await Controller.start(config, createLogger({ level, name: "bench-controller" }));
const { token } = await controller.context.tokens.create({
  role: "node",
  ttlMs: 3_600_000,
  uses: Number(usesText),
  description: "heartbeat bench agents",
  createdBy: "heartbeat bench",
  caFingerprint: controller.ca.fingerprint,
});
const { cluster, bridge, web } = controller.addresses;
console.log(`controller pid ${process.pid}: cluster ${cluster} (TLS), bridge ${bridge}, web ${web}`);
serveParent({ pid: process.pid, cluster, bridge, web, token, caPem: controller.ca.certificatePem }, () =>
  controller.close(),
);
