import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { type ConfigOverrides, resolveControllerConfig } from "../../src/controller/config.ts";
import { Controller } from "../../src/controller/controller.ts";
import { createLogger } from "../../src/observability/logger.ts";

export interface TestController {
  readonly controller: Controller;
  readonly dataDir: string;
  readonly bridgePort: number;
  readonly clusterPort: number;
  readonly webPort: number;
  /** Stops the controller and starts a new one on the same data dir (new ports). */
  restart(): Promise<TestController>;
  close(): Promise<void>;
}

/** A real controller on loopback ports chosen by the kernel, with its data in a temp dir. */
export async function startTestController(
  raw: Record<string, unknown> = {},
  overrides: ConfigOverrides = {},
  dataDir?: string,
  /** Whether closing removes the data dir: true for a temp dir made here, kept across restarts. */
  ownsDataDir = dataDir === undefined,
): Promise<TestController> {
  const dir = dataDir ?? (await mkdtemp(join(tmpdir(), "corral-test-")));
  const config = resolveControllerConfig(
    {
      http: { address: "127.0.0.1:0" },
      grpcBridge: { address: "127.0.0.1:0" },
      web: { address: "127.0.0.1:0" },
      shutdownGrace: "1s",
      ...raw,
    },
    dir,
    { dataDir: dir, ...overrides },
    "test",
  );
  const controller = await Controller.start(
    config,
    createLogger({ level: process.env.CORRAL_TEST_LOG ?? "silent" }),
  );
  const port = (address: string) => Number(address.slice(address.lastIndexOf(":") + 1));
  const handle: TestController = {
    controller,
    dataDir: dir,
    bridgePort: port(controller.addresses.bridge),
    clusterPort: port(controller.addresses.cluster),
    webPort: port(controller.addresses.web),
    async restart() {
      await controller.close();
      return startTestController(raw, overrides, dir, ownsDataDir);
    },
    async close() {
      await controller.close();
      if (ownsDataDir) await rm(dir, { recursive: true, force: true });
    },
  };
  return handle;
}
