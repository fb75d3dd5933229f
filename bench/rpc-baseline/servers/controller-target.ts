/**
 * (c) The real controller, in this process: a fresh data dir, the loopback bridge on a free port, and
 * `count` nodes registered through the core before it reports ready. The bench then calls
 * corral.v1.NodesService/GetNode on the bridge — the full path: adapter, authorization, registry, store.
 */
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { resolveControllerConfig } from "../../../src/controller/config.ts";
import { Controller } from "../../../src/controller/controller.ts";
import { createLogger } from "../../../src/observability/logger.ts";
import { reportReady } from "../child.ts";

const count = Number(process.argv[2] ?? "1000");
const dataDir = await mkdtemp(join(tmpdir(), "corral-bench-"));
const config = resolveControllerConfig(
  {
    http: { address: "127.0.0.1:0" },
    grpcBridge: { address: "127.0.0.1:0" },
    web: { address: "127.0.0.1:0" },
  },
  dataDir,
  { dataDir },
  "bench",
);
const controller = await Controller.start(config, createLogger({ level: "warn" }));
const nodeIds: string[] = [];
for (let i = 0; i < count; i++) {
  const node = await controller.context.registry.register({
    name: `node-${String(i).padStart(4, "0")}`,
    address: `10.0.${i >> 8}.${i & 255}:7444`,
    status: "ready",
    services: ["HUB_SERVER", "RESOURCES"],
    metadata: {
      zone: { kind: "string", value: `zone-${i % 3}` },
      rack: { kind: "int", value: BigInt(i % 40) },
    },
    labels: { pool: i % 2 === 0 ? "gpu" : "cpu", team: "infra" },
    resources: {
      cpuCores: 16,
      memoryMb: 65_536,
      gpus: [{ name: "NVIDIA L4", memoryMb: 24_576, uuid: `GPU-${i}` }],
      maxLayers: 32,
      disks: [{ mount: "/", sizeBytes: 512 * 1024 ** 3 }],
    },
  });
  nodeIds.push(node.id);
}
const bridgePort = Number(
  controller.addresses.bridge.slice(controller.addresses.bridge.lastIndexOf(":") + 1),
);
const stop = async () => {
  await controller.close();
  await rm(dataDir, { recursive: true, force: true });
  process.exit(0);
};
process.once("SIGTERM", () => void stop());
process.once("disconnect", () => void stop());
reportReady({ port: bridgePort, nodeIds });
