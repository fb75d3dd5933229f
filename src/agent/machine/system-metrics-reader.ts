import os from "node:os";
import type { GpuPoint } from "../../core/metrics/metrics-history.ts";
import { type DiskSample, disksFromFsSize, type FsUsageEntry } from "./file-systems.ts";
import { MachineSampler } from "./machine-sampler.ts";
import type { NetworkSample } from "./system-metrics.ts";

/** One sample of the node, the fields of picontroller.SystemMetrics (bytes as plain numbers). */
export interface SystemMetricsSample {
  /** Percent of all CPUs busy since the previous sample, 0–100. */
  cpuUsage: number;
  memoryTotalBytes: number;
  memoryUsedBytes: number;
  /** Percent, 0–100. */
  memoryUsage: number;
  swapTotalBytes: number;
  swapUsedBytes: number;
  disks: DiskSample[];
  load: { load1: number; load5: number; load15: number };
  uptimeSeconds: number;
  network: NetworkSample[];
  /** Degrees Celsius; undefined when the board has no readable sensor. */
  temperatureCelsius: number | undefined;
  /** Milliseconds since the Unix epoch. */
  timestamp: number;
  hostname: string;
  cpuCount: number;
  /** Every GPU nvidia-smi reports now; empty without NVIDIA GPUs. */
  gpus: GpuPoint[];
}

export interface SystemMetricsOptions {
  /** The node's sampler, shared with its other readers; without one, a sampler of this reader's own. */
  machine?: MachineSampler;
  /** Root of the proc file system; default "/proc" (for a sampler of its own, as are the rest). */
  procDir?: string;
  /** Root of sysfs; default "/sys". */
  sysDir?: string;
  /**
   * `vcgencmd` (Raspberry Pi firmware), asked for the temperature only when no thermal zone answers;
   * a path, or false for never. Default: "vcgencmd" when it is on PATH.
   */
  vcgencmd?: string | false;
  vcgencmdTimeoutMs?: number;
  /** The file system listing (si.fsSize by default), for tests. */
  listFileSystems?: () => Promise<FsUsageEntry[]>;
  diskTimeoutMs?: number;
  /** The first sample of CPU use waits this long between its two readings; default 100 ms. */
  firstSampleMs?: number;
  /** How old a shared figure this reader accepts; default 0: each call measures the machine now. */
  maxAgeMs?: number;
  /** nvidia-smi: a name on PATH or a path; false for no GPU figures. Default "nvidia-smi". */
  nvidiaSmi?: string | false;
  onWarning?: (message: string) => void;
}

/**
 * A reader of the node's metrics for picontroller.NodeAgent/GetSystemMetrics. Keep one per consumer: its
 * CPU figure covers the time since its previous call. Nothing is invented: an unreadable figure is 0
 * (and told to onWarning), a missing sensor leaves the temperature out. A caller asks for the node as it
 * is now (Distributed LLM's GetMetrics promises a reading per answer), so by default every call measures
 * the machine; that reading is then the one heartbeats and the metrics pusher share.
 */
export function createSystemMetricsReader(
  options: SystemMetricsOptions = {},
): () => Promise<SystemMetricsSample> {
  const machine = options.machine ?? new MachineSampler(options);
  const age = options.maxAgeMs ?? 0;
  const cpu = machine.cpuMeter({
    maxAgeMs: age,
    ...(options.firstSampleMs === undefined ? {} : { firstSampleMs: options.firstSampleMs }),
  });
  return async () => {
    const [cpuUsage, memory, network, load, uptimeSeconds, celsius, fileSystems, gpus] = await Promise.all([
      cpu(),
      machine.memory(age),
      machine.network(age),
      machine.loadAverage(age),
      machine.uptimeSeconds(age),
      machine.temperature(age),
      machine.fileSystems(age),
      machine.gpus(age),
    ]);
    return {
      cpuUsage,
      memoryTotalBytes: memory.totalBytes,
      memoryUsedBytes: memory.usedBytes,
      memoryUsage: memory.usage,
      swapTotalBytes: memory.swapTotalBytes,
      swapUsedBytes: memory.swapUsedBytes,
      disks: disksFromFsSize(fileSystems),
      load,
      uptimeSeconds,
      network,
      temperatureCelsius: celsius,
      timestamp: Date.now(),
      hostname: os.hostname(),
      cpuCount: os.cpus().length,
      gpus,
    };
  };
}
