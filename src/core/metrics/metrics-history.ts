import { CorralError } from "../../base/errors.ts";

/** A GPU's figures in one sample. */
export interface GpuPoint {
  readonly uuid: string;
  readonly name: string;
  readonly utilizationPercent: number;
  readonly memoryUsedBytes: number;
  readonly memoryTotalBytes: number;
  readonly temperatureCelsius?: number;
}

/** One sample of a node, as an agent pushed it (plain numbers; times in ms since the epoch). */
export interface MetricsPoint {
  readonly timeUnixMs: number;
  readonly cpuPercent: number;
  readonly memoryUsedBytes: number;
  readonly memoryTotalBytes: number;
  readonly networkRxBytesPerSecond: number;
  readonly networkTxBytesPerSecond: number;
  readonly temperatureCelsius?: number;
  readonly load1: number;
  readonly load5: number;
  readonly load15: number;
  readonly gpus: readonly GpuPoint[];
}

/** The numeric fields of a sample, in the order they sit in a ring's row. */
const columns = [
  "timeUnixMs",
  "cpuPercent",
  "memoryUsedBytes",
  "memoryTotalBytes",
  "networkRxBytesPerSecond",
  "networkTxBytesPerSecond",
  "temperatureCelsius",
  "load1",
  "load5",
  "load15",
] as const;
const width = columns.length;

/** Bytes of the numbers of one sample without GPUs (ten float64): the "raw" size history is measured by. */
export const rawSampleBytes = width * Float64Array.BYTES_PER_ELEMENT;

/** Bounds on what one sample may carry, so a node cannot make the controller keep unbounded data. */
export const maxGpusPerSample = 16;
const maxGpuTextLength = 128;

/**
 * One node's samples: a fixed ring of float64 rows (no object per sample), GPUs beside it only for
 * nodes that report any. Memory is capacity × 80 bytes, allocated on the node's first sample.
 */
class NodeRing {
  readonly #rows: Float64Array;
  #gpus: (readonly GpuPoint[] | undefined)[] | undefined;
  readonly #capacity: number;
  /** Index of the next row to write. */
  #next = 0;
  #size = 0;

  constructor(capacity: number) {
    this.#capacity = capacity;
    this.#rows = new Float64Array(capacity * width);
  }

  get size(): number {
    return this.#size;
  }

  get lastTime(): number {
    if (this.#size === 0) return Number.NEGATIVE_INFINITY;
    const last = (this.#next - 1 + this.#capacity) % this.#capacity;
    return this.#rows[last * width] ?? Number.NEGATIVE_INFINITY;
  }

  get bytes(): number {
    return this.#rows.byteLength + (this.#gpus === undefined ? 0 : this.#capacity * 8);
  }

  push(point: MetricsPoint): void {
    const base = this.#next * width;
    const rows = this.#rows;
    rows[base] = point.timeUnixMs;
    rows[base + 1] = point.cpuPercent;
    rows[base + 2] = point.memoryUsedBytes;
    rows[base + 3] = point.memoryTotalBytes;
    rows[base + 4] = point.networkRxBytesPerSecond;
    rows[base + 5] = point.networkTxBytesPerSecond;
    rows[base + 6] = point.temperatureCelsius ?? Number.NaN;
    rows[base + 7] = point.load1;
    rows[base + 8] = point.load5;
    rows[base + 9] = point.load15;
    if (point.gpus.length > 0) this.#gpus ??= new Array(this.#capacity).fill(undefined);
    if (this.#gpus !== undefined) this.#gpus[this.#next] = point.gpus.length > 0 ? point.gpus : undefined;
    this.#next = (this.#next + 1) % this.#capacity;
    this.#size = Math.min(this.#size + 1, this.#capacity);
  }

  /** Oldest first, only samples taken after `sinceMs`. */
  read(sinceMs: number): MetricsPoint[] {
    const out: MetricsPoint[] = [];
    const start = (this.#next - this.#size + this.#capacity) % this.#capacity;
    for (let i = 0; i < this.#size; i += 1) {
      const index = (start + i) % this.#capacity;
      if ((this.#rows[index * width] ?? 0) <= sinceMs) continue;
      out.push(this.#at(index));
    }
    return out;
  }

  latest(): MetricsPoint | undefined {
    if (this.#size === 0) return undefined;
    return this.#at((this.#next - 1 + this.#capacity) % this.#capacity);
  }

  #at(index: number): MetricsPoint {
    const r = this.#rows;
    const base = index * width;
    const temperature = r[base + 6] ?? Number.NaN;
    return {
      timeUnixMs: r[base] ?? 0,
      cpuPercent: r[base + 1] ?? 0,
      memoryUsedBytes: r[base + 2] ?? 0,
      memoryTotalBytes: r[base + 3] ?? 0,
      networkRxBytesPerSecond: r[base + 4] ?? 0,
      networkTxBytesPerSecond: r[base + 5] ?? 0,
      ...(Number.isNaN(temperature) ? {} : { temperatureCelsius: temperature }),
      load1: r[base + 7] ?? 0,
      load5: r[base + 8] ?? 0,
      load15: r[base + 9] ?? 0,
      gpus: this.#gpus?.[index] ?? [],
    };
  }
}

/** A batch of samples for one node, as a watcher receives it. */
export interface MetricsBatch {
  readonly nodeId: string;
  readonly samples: readonly MetricsPoint[];
  readonly history: boolean;
}

export interface MetricsHistoryOptions {
  /** Samples kept per node; the oldest is dropped for a new one. */
  readonly capacity: number;
  /** Live samples a watcher may fall behind before it is cut off. */
  readonly maxQueued: number;
}

type Listener = (nodeId: string, point: MetricsPoint) => void;

/**
 * The controller's metrics history: a bounded ring per node, in memory (samples are stale in minutes
 * and too many for store writes), and watchers that get the history, then every new sample.
 */
export class MetricsHistory {
  readonly capacity: number;
  readonly #maxQueued: number;
  readonly #rings = new Map<string, NodeRing>();
  readonly #listeners = new Set<Listener>();

  constructor(options: MetricsHistoryOptions) {
    if (!Number.isInteger(options.capacity) || options.capacity < 1)
      throw CorralError.invalidArgument("metrics.historySamples", "must be a whole number ≥ 1");
    this.capacity = options.capacity;
    this.#maxQueued = options.maxQueued;
  }

  /**
   * Adds a node's samples, oldest first. A sample not newer than the node's last one is skipped (an
   * agent re-sending a batch whose answer it lost). Returns how many were kept.
   */
  record(nodeId: string, points: readonly MetricsPoint[]): number {
    // Every sample is checked before any is kept: a bad batch changes nothing.
    const checked = points.map(sanitize);
    let ring = this.#rings.get(nodeId);
    let kept = 0;
    for (const point of checked) {
      if (ring === undefined) {
        ring = new NodeRing(this.capacity);
        this.#rings.set(nodeId, ring);
      }
      if (point.timeUnixMs <= ring.lastTime) continue;
      ring.push(point);
      kept += 1;
      for (const listener of this.#listeners) listener(nodeId, point);
    }
    return kept;
  }

  /** Several nodes' samples at once (from another controller): all are checked before any is kept. */
  recordMany(
    batches: readonly { readonly nodeId: string; readonly points: readonly MetricsPoint[] }[],
  ): number {
    const checked = batches.map((batch) => ({ nodeId: batch.nodeId, points: batch.points.map(sanitize) }));
    let kept = 0;
    for (const batch of checked) kept += this.record(batch.nodeId, batch.points);
    return kept;
  }

  /** A node's samples, oldest first (taken after `sinceMs`). Empty for a node that never pushed. */
  history(nodeId: string, sinceMs = 0): MetricsPoint[] {
    return this.#rings.get(nodeId)?.read(sinceMs) ?? [];
  }

  latest(nodeId: string): MetricsPoint | undefined {
    return this.#rings.get(nodeId)?.latest();
  }

  /** Node ids with samples. */
  nodeIds(): string[] {
    return [...this.#rings.keys()];
  }

  forget(nodeId: string): void {
    this.#rings.delete(nodeId);
  }

  /** Forgets every node not in `nodeIds` (removed nodes). */
  retain(nodeIds: ReadonlySet<string>): void {
    for (const id of this.#rings.keys()) if (!nodeIds.has(id)) this.#rings.delete(id);
  }

  /** The rings' memory (their typed arrays), bytes. */
  get bytes(): number {
    let total = 0;
    for (const ring of this.#rings.values()) total += ring.bytes;
    return total;
  }

  get watchers(): number {
    return this.#listeners.size;
  }

  /**
   * The history of one node (or of every node, `nodeId` undefined) as one batch per node, then every
   * new sample as it is recorded, until `signal` aborts. Live samples wait in a queue of `maxQueued`;
   * a reader that lets it fill is cut off with RESOURCE_EXHAUSTED, never buffered without bound.
   */
  async *watch(
    nodeId: string | undefined,
    sinceMs: number,
    signal: AbortSignal,
  ): AsyncGenerator<MetricsBatch> {
    const queue: { nodeId: string; point: MetricsPoint }[] = [];
    let overflowed = false;
    let wake: (() => void) | undefined;
    const listener: Listener = (id, point) => {
      if (nodeId !== undefined && id !== nodeId) return;
      if (queue.length >= this.#maxQueued) {
        overflowed = true;
      } else {
        queue.push({ nodeId: id, point });
      }
      wake?.();
    };
    const onAbort = () => wake?.();
    // Listen before reading the history, so nothing recorded in between is lost.
    this.#listeners.add(listener);
    signal.addEventListener("abort", onAbort, { once: true });
    try {
      const lastSent = new Map<string, number>();
      for (const id of nodeId === undefined ? this.nodeIds() : [nodeId]) {
        const samples = this.history(id, sinceMs);
        lastSent.set(id, samples.at(-1)?.timeUnixMs ?? sinceMs);
        if (samples.length > 0 || nodeId !== undefined) yield { nodeId: id, samples, history: true };
      }
      while (!signal.aborted) {
        if (overflowed)
          throw new CorralError(
            "RESOURCE_EXHAUSTED",
            `the reader fell more than ${this.#maxQueued} samples behind; watch again with since_unix_ms`,
          );
        const next = queue.shift();
        if (next === undefined) {
          await new Promise<void>((resolve) => {
            wake = resolve;
          });
          wake = undefined;
          continue;
        }
        // Already in the history batch.
        if (next.point.timeUnixMs <= (lastSent.get(next.nodeId) ?? Number.NEGATIVE_INFINITY)) continue;
        lastSent.set(next.nodeId, next.point.timeUnixMs);
        yield { nodeId: next.nodeId, samples: [next.point], history: false };
      }
    } finally {
      this.#listeners.delete(listener);
      signal.removeEventListener("abort", onAbort);
    }
  }
}

function finite(value: number, field: string): number {
  if (!Number.isFinite(value)) throw CorralError.invalidArgument(field, "must be a finite number");
  return value;
}

function nonNegative(value: number, field: string): number {
  return Math.max(0, finite(value, field));
}

function percent(value: number, field: string): number {
  return Math.min(100, nonNegative(value, field));
}

function text(value: string, field: string): string {
  if (value.length > maxGpuTextLength)
    throw CorralError.invalidArgument(field, `is longer than ${maxGpuTextLength} characters`);
  return value;
}

/** A sample that needs no change: every figure finite and in range, no GPUs (the common case). */
function isClean(p: MetricsPoint): boolean {
  return (
    p.gpus.length === 0 &&
    p.timeUnixMs >= 0 &&
    p.cpuPercent >= 0 &&
    p.cpuPercent <= 100 &&
    p.memoryUsedBytes >= 0 &&
    p.memoryTotalBytes >= 0 &&
    p.networkRxBytesPerSecond >= 0 &&
    p.networkTxBytesPerSecond >= 0 &&
    p.load1 >= 0 &&
    p.load5 >= 0 &&
    p.load15 >= 0 &&
    Number.isFinite(p.timeUnixMs + p.memoryUsedBytes + p.memoryTotalBytes) &&
    Number.isFinite(p.networkRxBytesPerSecond + p.networkTxBytesPerSecond + p.load1 + p.load5 + p.load15) &&
    (p.temperatureCelsius === undefined || Number.isFinite(p.temperatureCelsius))
  );
}

/** Checks a pushed sample: finite numbers, percentages clamped to 0–100, at most 16 GPUs. */
function sanitize(point: MetricsPoint): MetricsPoint {
  // Comparisons with NaN are false, so a NaN anywhere fails isClean and is reported below.
  if (isClean(point)) return point;
  if (point.gpus.length > maxGpusPerSample)
    throw CorralError.invalidArgument("samples.gpus", `has more than ${maxGpusPerSample} GPUs`);
  const temperature = point.temperatureCelsius;
  return {
    timeUnixMs: nonNegative(point.timeUnixMs, "samples.time_unix_ms"),
    cpuPercent: percent(point.cpuPercent, "samples.cpu_percent"),
    memoryUsedBytes: nonNegative(point.memoryUsedBytes, "samples.memory_used_bytes"),
    memoryTotalBytes: nonNegative(point.memoryTotalBytes, "samples.memory_total_bytes"),
    networkRxBytesPerSecond: nonNegative(
      point.networkRxBytesPerSecond,
      "samples.network_rx_bytes_per_second",
    ),
    networkTxBytesPerSecond: nonNegative(
      point.networkTxBytesPerSecond,
      "samples.network_tx_bytes_per_second",
    ),
    ...(temperature === undefined
      ? {}
      : { temperatureCelsius: finite(temperature, "samples.temperature_celsius") }),
    load1: nonNegative(point.load1, "samples.load1"),
    load5: nonNegative(point.load5, "samples.load5"),
    load15: nonNegative(point.load15, "samples.load15"),
    gpus: point.gpus.map((gpu) => ({
      uuid: text(gpu.uuid, "samples.gpus.uuid"),
      name: text(gpu.name, "samples.gpus.name"),
      utilizationPercent: percent(gpu.utilizationPercent, "samples.gpus.utilization_percent"),
      memoryUsedBytes: nonNegative(gpu.memoryUsedBytes, "samples.gpus.memory_used_bytes"),
      memoryTotalBytes: nonNegative(gpu.memoryTotalBytes, "samples.gpus.memory_total_bytes"),
      ...(gpu.temperatureCelsius === undefined
        ? {}
        : { temperatureCelsius: finite(gpu.temperatureCelsius, "samples.gpus.temperature_celsius") }),
    })),
  };
}
