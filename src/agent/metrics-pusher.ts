import { setTimeout as sleep } from "node:timers/promises";
import { durationMs } from "@bufbuild/protobuf/wkt";
import type { Client } from "@connectrpc/connect";
import { parseDuration } from "../base/duration.ts";
import type { MetricsPoint } from "../core/metrics/metrics-history.ts";
import { defaults } from "../defaults.ts";
import type { MetricsService } from "../gen/corral/v1/metrics_pb.ts";
import type { Logger } from "../observability/logger.ts";
import { MachineSampler } from "./machine/machine-sampler.ts";

/** Kept here too: tests and older callers import it from the pusher. */
export { parseGpuMetricsCsv } from "./machine/gpu-metrics.ts";

export interface MetricsSamplerOptions {
  /** The node's machine sampler, shared with its heartbeats and NodeAgent; without one, one of its own. */
  readonly machine?: MachineSampler;
  /** Root of the proc file system; default "/proc" (this and the next two: for a sampler of its own). */
  readonly procDir?: string;
  readonly sysDir?: string;
  /** nvidia-smi: a name on PATH or a path; false for no GPU figures. Default "nvidia-smi". */
  readonly nvidiaSmi?: string | false;
  readonly clock?: () => number;
}

/**
 * A sampler of this node for the metrics history: CPU since the previous call, memory, network rates
 * over every interface but loopback, load, temperature and GPUs. Keep one per node (it remembers the
 * previous CPU and network counters).
 */
export function createMetricsSampler(options: MetricsSamplerOptions = {}): () => Promise<MetricsPoint> {
  const now = options.clock ?? Date.now;
  const machine =
    options.machine ??
    new MachineSampler({
      ...(options.procDir === undefined ? {} : { procDir: options.procDir }),
      ...(options.sysDir === undefined ? {} : { sysDir: options.sysDir }),
      ...(options.clock === undefined ? {} : { clock: options.clock }),
      vcgencmd: false,
      nvidiaSmi: options.nvidiaSmi ?? "nvidia-smi",
    });
  const cpu = machine.cpuMeter();
  let previousNet: { at: number; rx: number; tx: number } | undefined;
  return async () => {
    const [cpuPercent, memory, network, load, celsius, gpuPoints] = await Promise.all([
      cpu(),
      machine.memory(),
      machine.network(),
      machine.loadAverage(),
      machine.temperature(),
      machine.gpus(),
    ]);
    const at = now();
    const interfaces = network.filter((i) => i.name !== "lo");
    const rx = interfaces.reduce((sum, i) => sum + i.rxBytes, 0);
    const tx = interfaces.reduce((sum, i) => sum + i.txBytes, 0);
    let rxRate = 0;
    let txRate = 0;
    if (previousNet !== undefined && at > previousNet.at) {
      const seconds = (at - previousNet.at) / 1000;
      // A counter that went back (interface reset) gives no rate rather than a negative one.
      rxRate = Math.max(0, rx - previousNet.rx) / seconds;
      txRate = Math.max(0, tx - previousNet.tx) / seconds;
    }
    previousNet = { at, rx, tx };
    return {
      timeUnixMs: at,
      cpuPercent,
      memoryUsedBytes: memory.usedBytes,
      memoryTotalBytes: memory.totalBytes,
      networkRxBytesPerSecond: rxRate,
      networkTxBytesPerSecond: txRate,
      ...(celsius === undefined ? {} : { temperatureCelsius: celsius }),
      ...load,
      gpus: gpuPoints,
    };
  };
}

/** A failed push is tried again this soon (samples are still taken only on the interval). */
const retryMs = 1_000;

export interface MetricsPusherOptions {
  /** A client of the controller's MetricsService; throws while the node is not signed in. */
  readonly client: () => Client<typeof MetricsService>;
  readonly sample: () => Promise<MetricsPoint>;
  readonly logger: Logger;
  /** Samples kept while the controller cannot be reached; default `metrics.agentBacklog`. */
  readonly backlog?: number;
}

/**
 * Pushes a sample of the node to the controller on the interval the controller hands back. Samples
 * taken while the controller cannot be reached wait (bounded, oldest dropped) and go with the next push.
 */
export class MetricsPusher implements AsyncDisposable {
  readonly #o: MetricsPusherOptions;
  readonly #stop = new AbortController();
  readonly #pending: MetricsPoint[] = [];
  #intervalMs = parseDuration(defaults.metrics.interval);
  #loop: Promise<void> | undefined;
  #pushed = 0;

  constructor(options: MetricsPusherOptions) {
    this.#o = options;
  }

  /** Samples the controller has accepted since start. */
  get pushed(): number {
    return this.#pushed;
  }

  get intervalMs(): number {
    return this.#intervalMs;
  }

  start(): void {
    this.#loop ??= this.#run().catch((error: unknown) => {
      if (!this.#stop.signal.aborted) this.#o.logger.error({ err: error }, "the metrics pusher stopped");
    });
  }

  async #run(): Promise<void> {
    const signal = this.#stop.signal;
    const backlog = this.#o.backlog ?? defaults.metrics.agentBacklog;
    let warned = false;
    let nextSampleAt = 0;
    while (!signal.aborted) {
      let wakeAt: number;
      try {
        if (Date.now() >= nextSampleAt) {
          nextSampleAt = Date.now() + this.#intervalMs;
          this.#pending.push(await this.#o.sample());
          if (this.#pending.length > backlog) this.#pending.splice(0, this.#pending.length - backlog);
        }
        const samples = [...this.#pending];
        const answer = await this.#o
          .client()
          .pushMetrics(
            { samples: samples.map((sample) => ({ ...sample, gpus: [...sample.gpus] })) },
            { signal, timeoutMs: 15_000 },
          );
        this.#pending.splice(0, samples.length);
        this.#pushed += samples.length;
        if (answer.nextIn !== undefined) {
          const interval = Math.max(1, durationMs(answer.nextIn));
          // A shorter interval from the controller applies now, not after the old one has run out.
          nextSampleAt = Math.min(nextSampleAt, Date.now() + interval);
          this.#intervalMs = interval;
        }
        warned = false;
        wakeAt = nextSampleAt;
      } catch (error) {
        if (signal.aborted) return;
        // Not signed in yet, or the controller is away: the heartbeat loop reports that; say it once.
        if (!warned) this.#o.logger.debug({ err: error }, "could not push metrics; keeping them for later");
        warned = true;
        // Try the push again soon (the node may just have joined), sampling only on the interval.
        wakeAt = Math.min(nextSampleAt, Date.now() + retryMs);
      }
      await sleep(Math.max(0, wakeAt - Date.now()), undefined, { signal, ref: false }).catch(() => undefined);
    }
  }

  async close(): Promise<void> {
    this.#stop.abort();
    await this.#loop;
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.close();
  }
}
