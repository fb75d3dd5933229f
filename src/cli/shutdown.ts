import { parseDuration } from "../base/duration.ts";
import { defaults } from "../defaults.ts";
import type { Logger } from "../observability/logger.ts";

/**
 * Runs until SIGINT or SIGTERM, then closes gracefully (drain). A second signal while draining exits at
 * once: the operator asked twice.
 */
export function closeOnSignals(close: () => Promise<void>, logger: Logger): Promise<void> {
  return new Promise((resolve) => {
    let stopping = false;
    const onSignal = (signal: NodeJS.Signals) => {
      if (stopping) {
        logger.warn({ signal }, "second signal: stopping now");
        process.exit(130);
      }
      stopping = true;
      logger.info({ signal }, "stopping (send the signal again to stop at once)");
      close().then(
        () => {
          process.off("SIGINT", onSignal);
          process.off("SIGTERM", onSignal);
          // Everything of ours is closed; a timer or socket a library left behind (etcd3's lease
          // keepalive after an etcd outage, for one) must not keep a stopped process alive.
          setTimeout(
            () => process.exit(process.exitCode ?? 0),
            parseDuration(defaults.controller.exitAfterClose),
          ).unref();
          resolve();
        },
        (error: unknown) => {
          logger.error({ err: error }, "error while stopping");
          process.exit(1);
        },
      );
    };
    process.on("SIGINT", onSignal);
    process.on("SIGTERM", onSignal);
  });
}
