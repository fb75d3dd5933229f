import type { Clock } from "../base/clock.ts";
import { parseDuration } from "../base/duration.ts";
import { JoinRequestBook } from "../core/admission/join-requests.ts";
import { TokenRegistry } from "../core/admission/tokens.ts";
import { AuditLog } from "../core/events/audit-log.ts";
import { EventFeed } from "../core/events/event-feed.ts";
import { MetricsHistory } from "../core/metrics/metrics-history.ts";
import { ModelRegistry } from "../core/models/model-registry.ts";
import { countByStatus } from "../core/nodes/node-counts.ts";
import { NodeHealthBook } from "../core/nodes/node-health.ts";
import { NodeLoads } from "../core/nodes/node-load.ts";
import { NodeRegistry } from "../core/nodes/node-registry.ts";
import { defaults } from "../defaults.ts";
import type { Logger } from "../observability/logger.ts";
import { ControllerMetrics } from "../observability/metrics.ts";
import type { Storage } from "./assemble-store.ts";
import type { ControllerConfig } from "./config.ts";
import { registerNodeMetricGauges } from "./metrics-gauges.ts";

/** The domain's books over the store, and the metrics read from them. Nothing here runs on its own. */
export interface Core {
  readonly registry: NodeRegistry;
  /** The registry for the leader's own writes (liveness sweeps), fenced with etcd. */
  readonly leaderRegistry: NodeRegistry;
  readonly feed: EventFeed;
  readonly tokens: TokenRegistry;
  readonly joinRequests: JoinRequestBook;
  readonly audit: AuditLog;
  readonly nodeHealth: NodeHealthBook;
  readonly models: ModelRegistry;
  /** The model registry placement writes through (the leader's, fenced with etcd). */
  readonly leaderModels: ModelRegistry;
  readonly loads: NodeLoads;
  readonly metrics: ControllerMetrics;
  readonly metricsHistory: MetricsHistory;
  readonly metricsSettings: { readonly intervalMs: number; readonly historySamples: number };
}

export function assembleCore(config: ControllerConfig, storage: Storage, clock: Clock, logger: Logger): Core {
  const { store, leaderStore } = storage;
  const registry = new NodeRegistry(store, clock, { view: storage.nodeView });
  const joinRequests = new JoinRequestBook(
    store,
    clock,
    {
      ...config.limits.joinRequests,
      perSourcePerMinute: defaults.joinRequests.perSourcePerMinute,
      keepDecidedMs: parseDuration(defaults.joinRequests.keepDecided),
    },
    (evicted, reason) =>
      logger.warn(
        { request: evicted.id, source: evicted.sourceAddress, name: evicted.name.slice(0, 128) },
        `join request ${reason}`,
      ),
  );
  const models = new ModelRegistry(store, clock, registry);
  const metricsSettings = config.metrics ?? {
    intervalMs: parseDuration(defaults.metrics.interval),
    historySamples: defaults.metrics.historySamples,
  };
  const metricsHistory = new MetricsHistory({
    capacity: metricsSettings.historySamples,
    maxQueued: defaults.metrics.maxQueued,
  });
  const metrics = new ControllerMetrics({
    countNodesByStatus: async () => countByStatus((await registry.list()).nodes),
    storeRevision: () => store.revision(),
  });
  registerNodeMetricGauges(metrics.registry, metricsHistory, async () => {
    const { nodes } = await registry.list();
    return new Map(nodes.map((node) => [node.id, node.name]));
  });
  const fenced = leaderStore !== store;
  return {
    registry,
    leaderRegistry: fenced ? new NodeRegistry(leaderStore, clock, { view: storage.nodeView }) : registry,
    feed: new EventFeed(store),
    tokens: new TokenRegistry(store, clock),
    joinRequests,
    audit: new AuditLog(store, clock),
    nodeHealth: new NodeHealthBook(store, clock),
    models,
    leaderModels: fenced ? new ModelRegistry(leaderStore, clock, registry) : models,
    loads: new NodeLoads(),
    metrics,
    metricsHistory,
    metricsSettings,
  };
}
