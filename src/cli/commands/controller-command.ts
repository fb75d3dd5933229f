import { resolve } from "node:path";
import type { Command } from "commander";
import { loadControllerConfig } from "../../controller/config.ts";
import { createLogger } from "../../observability/logger.ts";
import { closeOnSignals } from "../shutdown.ts";

interface ControllerFlags {
  config?: string;
  dataDir?: string;
  insecure: boolean;
  logLevel: string;
  installPackage?: string;
}

export function registerControllerCommand(program: Command): void {
  program
    .command("controller")
    .description("run the controller: the cluster's API, store and certificate authority")
    .option("-c, --config <file>", "controller YAML (NanoPing controller format plus web, dataDir, store)")
    .option("--data-dir <dir>", "where the store, the CA and keys live (overrides the config)")
    .option("--insecure", "allow plaintext listeners on non-loopback addresses", false)
    .option("--install-package <tgz>", "the package /corral.tgz serves to joining nodes (web.installPackage)")
    .option("--log-level <level>", "trace, debug, info, warn, error", "info")
    .action(async (options: ControllerFlags) => {
      const { AgentLogRing } = await import("../../host/logs/ring-log-source.ts");
      const logRing = new AgentLogRing();
      const logger = createLogger({ level: options.logLevel, name: "controller", tee: logRing.ingest });
      const config = await loadControllerConfig(options.config, {
        insecure: options.insecure,
        ...(options.dataDir === undefined ? {} : { dataDir: options.dataDir }),
        ...(options.installPackage === undefined ? {} : { installPackage: resolve(options.installPackage) }),
      });
      // Loaded on demand: the other commands start faster without the controller's dependencies.
      const { Controller } = await import("../../controller/controller.ts");
      const controller = await Controller.start(config, logger, undefined, logRing);
      process.stdout.write(
        `corral controller "${config.nodeName}" is up\n` +
          `  cluster (gRPC, TLS)  ${controller.addresses.cluster}\n` +
          `  bridge (gRPC, h2c)   ${controller.addresses.bridge}\n` +
          `  web                  ${controller.webUrl}\n` +
          `  CA fingerprint       ${controller.ca.fingerprint}\n`,
      );
      await closeOnSignals(() => controller.close(), logger);
    });
}
