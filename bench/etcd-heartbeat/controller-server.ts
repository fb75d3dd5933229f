/**
 * A controller on etcd, in a process of its own, for the etcd heartbeat bench: every listener on
 * 127.0.0.1 with a port from the kernel, a join token good for `<uses>` nodes, and its addresses sent to
 * the bench over IPC.
 *
 *   controller-server.ts <data dir> <name> <etcd endpoint> <ca key file> <lease ttl> <uses> [log level]
 */

import { resolveControllerConfig } from "../../src/controller/config.ts";
import { Controller } from "../../src/controller/controller.ts";
import { createLogger } from "../../src/observability/logger.ts";
import { serveParent } from "../heartbeat/children.ts";

const [dataDir, name, endpoint, keyFile, leaseTtl, usesText, level = "warn"] = process.argv.slice(2);
if (
  dataDir === undefined ||
  name === undefined ||
  endpoint === undefined ||
  keyFile === undefined ||
  leaseTtl === undefined ||
  usesText === undefined
) {
  throw new Error(
    "usage: controller-server.ts <data dir> <name> <etcd endpoint> <ca key file> <lease ttl> <uses> [log level]",
  );
}
const config = resolveControllerConfig(
  {
    node: { name },
    http: { address: "127.0.0.1:0" },
    grpcBridge: { address: "127.0.0.1:0" },
    web: { address: "127.0.0.1:0" },
    shutdownGrace: "1s",
    store: { etcd: { endpoints: [endpoint], prefix: "/bench", leaseTtl } },
    ca: { keyFile },
  },
  dataDir,
  { dataDir },
  "etcd heartbeat bench",
);
const controller = await Controller.start(config, createLogger({ level, name }));
const { token } = await controller.context.tokens.create({
  role: "node",
  ttlMs: 3_600_000,
  uses: Number(usesText),
  description: "etcd heartbeat bench agents",
  createdBy: "etcd heartbeat bench",
  caFingerprint: controller.ca.fingerprint,
});
const { cluster, bridge } = controller.addresses;
serveParent({ pid: process.pid, cluster, bridge, token, caPem: controller.ca.certificatePem }, () =>
  controller.close(),
);
