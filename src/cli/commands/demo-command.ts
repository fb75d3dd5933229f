import { resolve } from "node:path";
import type { Command } from "commander";
import { resolveControllerConfig } from "../../controller/config.ts";
import { defaults } from "../../defaults.ts";
import { createLogger } from "../../observability/logger.ts";
import { closeOnSignals } from "../shutdown.ts";

/**
 * `npm start`: a whole cluster on this machine, on the addresses the seed documents use, so their
 * examples work as printed (`grpcurl -plaintext localhost:8080 list`, "My Controller").
 */
export function registerDemoCommand(program: Command): void {
  program
    .command("demo")
    .description("start a demo cluster on this machine (data in ./.corral/demo)")
    .option("--data-dir <dir>", "where the demo keeps its state", defaults.demo.dataDir)
    .option("--log-level <level>", "trace, debug, info, warn, error", "warn")
    .action(async (options: { dataDir: string; logLevel: string }) => {
      const logger = createLogger({ level: options.logLevel, name: "demo" });
      const config = resolveControllerConfig(
        {
          node: { name: defaults.controller.nodeName },
          http: { address: "127.0.0.1:7443" },
          grpcBridge: { address: defaults.controller.bridgeAddress },
          web: { address: defaults.controller.webAddress },
          hubServer: {
            authenticationByRequest: { timeout: defaults.controller.authenticationByRequestTimeout },
          },
          shutdownGrace: "3s",
        },
        process.cwd(),
        { dataDir: resolve(options.dataDir) },
        "demo",
      );
      // Loaded on demand: the other commands start faster without the controller's dependencies.
      const { Controller } = await import("../../controller/controller.ts");
      const controller = await Controller.start(config, logger);
      const bridge = controller.addresses.bridge.replace("127.0.0.1", "localhost");
      process.stdout.write(
        `\ncorral demo cluster is up (data in ${config.dataDir})\n\n` +
          `  controller "${config.nodeName}"\n` +
          `    cluster gRPC (TLS)     ${controller.addresses.cluster}   CA ${controller.ca.fingerprint}\n` +
          `    bridge gRPC (h2c)      ${controller.addresses.bridge}\n` +
          `    web, /metrics          ${controller.webUrl}\n\n` +
          "Try:\n" +
          "  npx corral status\n" +
          "  npx corral nodes ls\n" +
          `  grpcurl -plaintext ${bridge} list\n` +
          `  grpcurl -plaintext ${bridge} distributed_llm.DiscoveryService/GetClusterInfo\n` +
          `  curl ${controller.webUrl}/metrics\n\n` +
          "Ctrl-C stops the cluster (twice: at once).\n",
      );
      await closeOnSignals(() => controller.close(), logger);
    });
}
