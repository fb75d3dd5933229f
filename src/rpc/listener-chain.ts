import type { AuditLog } from "../core/events/audit-log.ts";
import type { Logger } from "../observability/logger.ts";
import type { ControllerMetrics } from "../observability/metrics.ts";
import type { PrincipalResolver } from "../security/principal-resolver.ts";
import { type AuthorizeOptions, authorizeCalls } from "./authorize.ts";
import type { ChainInterceptor } from "./call-chain.ts";
import { observeCalls } from "./interceptors.ts";
import type { StreamLimits } from "./stream-limits.ts";

/**
 * What every controller listener runs around a call, in this order: the call log and metrics
 * (outermost, so they see refusals too), authorization (and its audit entry), then, added by each
 * transport since only it knows the connection, the open-stream limit and the request guard; errors
 * are mapped to the transport's status last. The cluster listener, the bridge and the web listener
 * each get one, told apart only by `listener`.
 */
export interface ListenerChain {
  readonly listener: AuthorizeOptions["listener"];
  readonly interceptors: readonly ChainInterceptor[];
  /** Shared by every listener: a principal's streams add up wherever they are opened. */
  readonly streamLimits: StreamLimits;
  /** A fault of the RPC layer (answered INTERNAL, the process goes on), logged with its stack. */
  readonly onFault: (error: unknown, method: string) => void;
}

export interface ListenerChainOptions {
  readonly resolver: PrincipalResolver;
  readonly audit: AuditLog;
  readonly logger: Logger;
  readonly metrics: ControllerMetrics;
  readonly streamLimits: StreamLimits;
}

export function listenerChain(
  listener: AuthorizeOptions["listener"],
  options: ListenerChainOptions,
): ListenerChain {
  const { logger } = options;
  return {
    listener,
    interceptors: [
      observeCalls(logger, options.metrics),
      authorizeCalls({
        listener,
        resolver: options.resolver,
        audit: options.audit,
        onAuditError: (error) => logger.error({ err: error }, "could not write an audit entry"),
      }),
    ],
    streamLimits: options.streamLimits,
    onFault: (error, method) =>
      logger.error({ method, err: error }, "fault answering a call; answered INTERNAL"),
  };
}
