import { CorralError, grpcStatusOf } from "../base/errors.ts";
import type { Logger } from "../observability/logger.ts";
import type { ControllerMetrics } from "../observability/metrics.ts";
import type { ChainInterceptor } from "./call-chain.ts";

/** One log line per call that failed with a server-side fault, debug lines for the rest, and metrics. */
export function observeCalls(logger: Logger, metrics?: ControllerMetrics): ChainInterceptor {
  return async (ctx, next) => {
    const method = `${ctx.service.typeName}/${ctx.method.name}`;
    const started = performance.now();
    let code = "OK";
    try {
      await next();
    } catch (error) {
      const corral = CorralError.from(error);
      code = corral.code;
      const fields = { method, code, peer: ctx.peer, ms: Math.round(performance.now() - started) };
      if (grpcStatusOf[corral.code] === grpcStatusOf.INTERNAL || corral.code === "UNKNOWN") {
        logger.error({ ...fields, err: corral.cause ?? corral }, corral.message);
      } else {
        logger.debug(fields, corral.message);
      }
      throw error;
    } finally {
      const seconds = (performance.now() - started) / 1000;
      metrics?.rpcCalls.inc({ method, code });
      metrics?.rpcDuration.observe({ method }, seconds);
      if (code === "OK") logger.debug({ method, peer: ctx.peer, ms: Math.round(seconds * 1000) }, "call");
    }
  };
}
