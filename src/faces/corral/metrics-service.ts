import { create } from "@bufbuild/protobuf";
import { durationFromMs } from "@bufbuild/protobuf/wkt";
import type { ServiceImpl } from "@connectrpc/connect";
import { CorralError } from "../../base/errors.ts";
import type { GpuPoint, MetricsHistory, MetricsPoint } from "../../core/metrics/metrics-history.ts";
import type { NodeRegistry } from "../../core/nodes/node-registry.ts";
import {
  type MetricsSample,
  MetricsSampleSchema,
  type MetricsService,
} from "../../gen/corral/v1/metrics_pb.ts";
import { principalOf } from "../../rpc/principal-context.ts";
import type { PeerFeed } from "../face-context.ts";

/** Samples one push may carry: an agent's backlog after an outage, bounded. */
const maxSamplesPerPush = 1_000;

export function sampleFromMessage(sample: MetricsSample): MetricsPoint {
  return {
    timeUnixMs: sample.timeUnixMs,
    cpuPercent: sample.cpuPercent,
    memoryUsedBytes: sample.memoryUsedBytes,
    memoryTotalBytes: sample.memoryTotalBytes,
    networkRxBytesPerSecond: sample.networkRxBytesPerSecond,
    networkTxBytesPerSecond: sample.networkTxBytesPerSecond,
    ...(sample.temperatureCelsius === undefined ? {} : { temperatureCelsius: sample.temperatureCelsius }),
    load1: sample.load1,
    load5: sample.load5,
    load15: sample.load15,
    gpus: sample.gpus.map(
      (gpu): GpuPoint => ({
        uuid: gpu.uuid,
        name: gpu.name,
        utilizationPercent: gpu.utilizationPercent,
        memoryUsedBytes: gpu.memoryUsedBytes,
        memoryTotalBytes: gpu.memoryTotalBytes,
        ...(gpu.temperatureCelsius === undefined ? {} : { temperatureCelsius: gpu.temperatureCelsius }),
      }),
    ),
  };
}

export function sampleToMessage(point: MetricsPoint): MetricsSample {
  return create(MetricsSampleSchema, {
    ...point,
    gpus: point.gpus.map((gpu) => ({ ...gpu })),
  });
}

/** What the metrics face touches: the in-memory history, the nodes, and the other controllers. */
export interface MetricsServiceDeps {
  readonly metrics: { readonly history: MetricsHistory; readonly intervalMs: number };
  readonly registry: NodeRegistry;
  readonly peers?: PeerFeed;
}

/**
 * corral.v1.MetricsService: agents push samples of their node (the history lives in the controller's
 * memory), people and the dashboard read a node's history and watch it live.
 */
export function metricsService({
  metrics,
  registry,
  peers,
}: MetricsServiceDeps): Partial<ServiceImpl<typeof MetricsService>> {
  const { history, intervalMs } = metrics;
  const interval = () => durationFromMs(intervalMs);
  const nodeIdOf = async (idOrName: string): Promise<string> => {
    if (idOrName === "") throw CorralError.invalidArgument("node_id", "is empty; name a node by id or name");
    return (await registry.get(idOrName)).id;
  };
  return {
    async pushMetrics(request, ctx) {
      const principal = principalOf(ctx);
      if (principal.kind !== "node")
        throw new CorralError("PERMISSION_DENIED", "only a node pushes metrics, about itself");
      if (request.samples.length > maxSamplesPerPush)
        throw CorralError.invalidArgument("samples", `has more than ${maxSamplesPerPush} samples`);
      const points = request.samples.map(sampleFromMessage);
      history.record(principal.nodeId, points);
      peers?.samples(principal.nodeId, points);
      return { nextIn: interval() };
    },

    async getNodeMetricsHistory(request) {
      const nodeId = await nodeIdOf(request.nodeId);
      return {
        nodeId,
        samples: history.history(nodeId, request.sinceUnixMs).map(sampleToMessage),
        capacity: history.capacity,
        interval: interval(),
      };
    },

    async *watchNodeMetrics(request, ctx) {
      const nodeId = request.nodeId === "" ? undefined : await nodeIdOf(request.nodeId);
      for await (const batch of history.watch(nodeId, request.sinceUnixMs, ctx.signal)) {
        yield {
          nodeId: batch.nodeId,
          samples: batch.samples.map(sampleToMessage),
          history: batch.history,
          interval: interval(),
        };
      }
    },

    async listLatestMetrics() {
      const { nodes } = await registry.list();
      const byId = new Map(nodes.map((node) => [node.id, node.name]));
      return {
        nodes: history.nodeIds().flatMap((nodeId) => {
          const latest = history.latest(nodeId);
          const name = byId.get(nodeId);
          if (latest === undefined || name === undefined) return [];
          return [{ nodeId, nodeName: name, sample: sampleToMessage(latest) }];
        }),
        interval: interval(),
      };
    },
  };
}
