import type { ServiceImpl } from "@connectrpc/connect";
import { CorralError } from "../../base/errors.ts";
import { Health } from "../../gen/grpc/health/v1/health_pb.ts";
import type { RpcServer } from "../rpc-server.ts";
import { HealthRegistry, ServingStatus } from "./health-registry.ts";

export { Health };

export interface HealthServiceOptions {
  /** List answers RESOURCE_EXHAUSTED beyond this many services (the health spec allows a limit). */
  readonly maxListed?: number;
}

/**
 * `grpc.health.v1.Health` over a registry: Check (NOT_FOUND for a service never registered), List,
 * and Watch, which sends the current status at once and then each change. A watcher that reads slowly
 * is sent only the latest status when it catches up — changes are coalesced, never queued.
 */
export function createHealthService(
  registry: HealthRegistry,
  options: HealthServiceOptions = {},
): ServiceImpl<typeof Health> {
  const maxListed = options.maxListed ?? 100;
  return {
    check(request) {
      const status = registry.get(request.service);
      if (status === undefined) throw CorralError.notFound("service", request.service);
      return { status };
    },

    list() {
      const all = registry.list();
      if (all.size > maxListed) {
        throw new CorralError("RESOURCE_EXHAUSTED", `${all.size} services exceed the limit of ${maxListed}`);
      }
      const statuses: Record<string, { status: ServingStatus }> = {};
      for (const [service, status] of all) statuses[service] = { status };
      return { statuses };
    },

    async *watch(request, ctx) {
      const signal = ctx.signal;
      const service = request.service;
      let latest = registry.get(service) ?? ServingStatus.SERVICE_UNKNOWN;
      let wake: (() => void) | undefined;
      const unsubscribe = registry.subscribe(service, (status) => {
        latest = status;
        wake?.();
      });
      const onAbort = () => wake?.();
      signal.addEventListener("abort", onAbort, { once: true });
      try {
        let sent: ServingStatus | undefined;
        // Ends when the call does (cancel, deadline, server shutdown); each turn sends or sleeps.
        while (!signal.aborted) {
          if (latest === sent) {
            await new Promise<void>((resolve) => {
              wake = resolve;
            });
            wake = undefined;
            continue;
          }
          sent = latest;
          yield { status: sent };
        }
      } finally {
        unsubscribe();
        signal.removeEventListener("abort", onAbort);
      }
    },
  };
}

/**
 * Mounts Health on `server` with a fresh registry (or the one given) and returns the registry. The
 * overall status ("") starts SERVING; register services with `registry.set(name, SERVING)`.
 */
export function mountHealth(
  server: Pick<RpcServer, "add">,
  registry: HealthRegistry = new HealthRegistry(),
  options: HealthServiceOptions = {},
): HealthRegistry {
  server.add(Health, createHealthService(registry, options));
  return registry;
}
