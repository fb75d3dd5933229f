import { readFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { fsSize } from "systeminformation/lib/filesystem.js";
import { parseDuration } from "../../base/duration.ts";
import type { GpuPoint } from "../../core/metrics/metrics-history.ts";
import { defaults } from "../../defaults.ts";
import { type FsUsageEntry, listFileSystemsWithin } from "./file-systems.ts";
import { discoverGpus, type GpuDiscovery, type GpuDiscoveryOptions } from "./gpu-discovery.ts";
import { createGpuReader } from "./gpu-metrics.ts";
import {
  type CpuTimes,
  cpuUsageBetween,
  createTemperatureReader,
  type MemoryFigures,
  memoryFromMeminfo,
  type NetworkSample,
  parseLoadavg,
  parseMeminfo,
  parseNetDev,
  parseProcStat,
  parseUptime,
} from "./system-metrics.ts";

export interface MachineSamplerOptions {
  /** Root of the proc file system; default "/proc". */
  readonly procDir?: string;
  /** Root of sysfs; default "/sys". */
  readonly sysDir?: string;
  /** `vcgencmd` for the temperature where no thermal zone answers: a path, or false for never. */
  readonly vcgencmd?: string | false;
  readonly vcgencmdTimeoutMs?: number;
  /** nvidia-smi: a name on PATH or a path; false for no GPU figures. Default "nvidia-smi". */
  readonly nvidiaSmi?: string | false;
  /** How the GPUs the node has are found (timeout, output cap); the command defaults to `nvidiaSmi`. */
  readonly gpuDiscovery?: GpuDiscoveryOptions;
  /** The file system listing (systeminformation's fsSize by default), for tests. */
  readonly listFileSystems?: () => Promise<FsUsageEntry[]>;
  /** The listing is given up after this; default `agentHardware.diskListTimeout`. */
  readonly diskTimeoutMs?: number;
  /**
   * A figure measured this recently is handed to the next consumer as it is; default
   * `agentHardware.machineSampleMaxAge`. Heartbeats, the metrics pusher and NodeAgent calls that come
   * together then cost one read of the machine, not one each.
   */
  readonly maxAgeMs?: number;
  /** Milliseconds now, for the age of a figure; Date.now by default. */
  readonly clock?: () => number;
  /** Told about anything that could not be read (the figure is then left empty, never invented). */
  readonly onWarning?: (message: string) => void;
}

/** The parts of the machine the sampler measures, each cached on its own. */
export type MachinePart =
  | "cpuTimes"
  | "memory"
  | "loadAverage"
  | "uptime"
  | "network"
  | "temperature"
  | "gpus"
  | "gpuInventory"
  | "fileSystems";

export interface LoadAverage {
  load1: number;
  load5: number;
  load15: number;
}

async function readText(file: string): Promise<string | undefined> {
  try {
    return await readFile(file, "utf8");
  } catch {
    return undefined;
  }
}

/** CPU times from os.cpus(), where there is no /proc/stat (macOS, a sandbox). */
function osCpuTimes(): CpuTimes {
  let busy = 0;
  let total = 0;
  for (const cpu of os.cpus()) {
    const t = cpu.times;
    const all = t.user + t.nice + t.sys + t.irq + t.idle;
    total += all;
    busy += all - t.idle;
  }
  return { busy, total };
}

/**
 * This machine, measured in one place: CPU time counters, memory, load average, uptime, network
 * counters, temperature, GPUs and file systems, from /proc and /sys (os.* where those are missing). Each
 * part is read when first asked for and handed to every consumer that asks within `maxAgeMs`, so the
 * node's readers (heartbeat load, NodeAgent metrics, the metrics pusher, the controller's own node) share
 * one reading. CPU use is a rate, so each consumer keeps its own previous counters (`cpuMeter`).
 * Holds no timer and no process between calls.
 */
export class MachineSampler {
  readonly #procDir: string;
  readonly #maxAgeMs: number;
  readonly #clock: () => number;
  readonly #cache = new Map<MachinePart, { at: number; value: Promise<unknown> }>();
  readonly #measured = new Map<MachinePart, number>();
  readonly #readers: { [P in MachinePart]: () => Promise<PartValue[P]> };

  constructor(options: MachineSamplerOptions = {}) {
    const procDir = options.procDir ?? "/proc";
    this.#procDir = procDir;
    this.#maxAgeMs = options.maxAgeMs ?? parseDuration(defaults.agentHardware.machineSampleMaxAge);
    this.#clock = options.clock ?? Date.now;
    const warn = options.onWarning ?? (() => {});
    const temperature = createTemperatureReader(options);
    const gpus = createGpuReader(options.nvidiaSmi ?? "nvidia-smi");
    const list = options.listFileSystems ?? (() => fsSize() as Promise<FsUsageEntry[]>);
    const diskTimeoutMs = options.diskTimeoutMs ?? parseDuration(defaults.agentHardware.diskListTimeout);
    const proc = (...parts: string[]) => readText(path.join(procDir, ...parts));
    this.#readers = {
      cpuTimes: () => this.#readCpuTimes(),
      memory: async () => {
        const text = await proc("meminfo");
        return (text === undefined ? undefined : memoryFromMeminfo(parseMeminfo(text))) ?? osMemory();
      },
      loadAverage: async () => {
        const text = await proc("loadavg");
        const [load1 = 0, load5 = 0, load15 = 0] = os.loadavg();
        return (text === undefined ? undefined : parseLoadavg(text)) ?? { load1, load5, load15 };
      },
      uptime: async () => {
        const text = await proc("uptime");
        return (text === undefined ? undefined : parseUptime(text)) ?? Math.floor(os.uptime());
      },
      network: async () => {
        const text = await proc("net", "dev");
        return text === undefined ? [] : parseNetDev(text);
      },
      temperature,
      gpus,
      gpuInventory: async () =>
        options.nvidiaSmi === false && options.gpuDiscovery?.command === undefined
          ? { gpus: [] }
          : discoverGpus({
              ...(options.nvidiaSmi === undefined || options.nvidiaSmi === false
                ? {}
                : { command: options.nvidiaSmi }),
              ...options.gpuDiscovery,
            }),
      fileSystems: () => listFileSystemsWithin(list, diskTimeoutMs, warn),
    };
  }

  /** CPU time counters (since boot), shared within the cache window. */
  cpuTimes(maxAgeMs?: number): Promise<CpuTimes> {
    return this.#part("cpuTimes", maxAgeMs);
  }

  memory(maxAgeMs?: number): Promise<MemoryFigures> {
    return this.#part("memory", maxAgeMs);
  }

  loadAverage(maxAgeMs?: number): Promise<LoadAverage> {
    return this.#part("loadAverage", maxAgeMs);
  }

  /** Whole seconds since boot. */
  uptimeSeconds(maxAgeMs?: number): Promise<number> {
    return this.#part("uptime", maxAgeMs);
  }

  /** Every interface's counters, loopback included. */
  network(maxAgeMs?: number): Promise<NetworkSample[]> {
    return this.#part("network", maxAgeMs);
  }

  /** Degrees Celsius; undefined where the board has no readable sensor. */
  temperature(maxAgeMs?: number): Promise<number | undefined> {
    return this.#part("temperature", maxAgeMs);
  }

  /** Every GPU nvidia-smi reports now; empty without NVIDIA GPUs. */
  gpus(maxAgeMs?: number): Promise<GpuPoint[]> {
    return this.#part("gpus", maxAgeMs);
  }

  /** The GPUs this machine has (name, memory, uuid), with a warning where nvidia-smi is there but fails. */
  gpuInventory(maxAgeMs?: number): Promise<GpuDiscovery> {
    return this.#part("gpuInventory", maxAgeMs);
  }

  /** The file system listing with usage; empty (and told to onWarning) when it fails or hangs. */
  fileSystems(maxAgeMs?: number): Promise<FsUsageEntry[]> {
    return this.#part("fileSystems", maxAgeMs);
  }

  /** How many times each part was really measured (not handed out from the cache): for tests and benches. */
  measured(part: MachinePart): number {
    return this.#measured.get(part) ?? 0;
  }

  /**
   * One consumer's CPU use: each call gives the busy percent of all CPUs since that consumer's previous
   * call. The first call, or one too soon after the last to show any CPU time, measures over
   * `firstSampleMs` (default 100 ms) instead. `maxAgeMs`: how old the counters may be (as for every part).
   */
  cpuMeter(options: { firstSampleMs?: number; maxAgeMs?: number } = {}): () => Promise<number> {
    const firstSampleMs = options.firstSampleMs ?? 100;
    let previous: CpuTimes | undefined;
    return async () => {
      let now = await this.cpuTimes(options.maxAgeMs);
      // This consumer has had the cached counters already: its interval ends now, not at that reading.
      if (now === previous) now = await this.#refresh("cpuTimes");
      if (previous === undefined || now.total - previous.total <= 0) {
        previous = now;
        await new Promise<void>((resolve) => setTimeout(resolve, firstSampleMs));
        now = await this.#refresh("cpuTimes");
      }
      const usage = cpuUsageBetween(previous, now);
      previous = now;
      return usage;
    };
  }

  /** The cached figure if it is at most `maxAgeMs` old (the sampler's window by default; 0: measure now). */
  #part<P extends MachinePart>(part: P, maxAgeMs = this.#maxAgeMs): Promise<PartValue[P]> {
    const cached = this.#cache.get(part);
    if (cached !== undefined && maxAgeMs > 0 && this.#clock() - cached.at <= maxAgeMs)
      return cached.value as Promise<PartValue[P]>;
    return this.#refresh(part);
  }

  /** Measures `part` now; the reading replaces the cached one for everyone. */
  #refresh<P extends MachinePart>(part: P): Promise<PartValue[P]> {
    this.#measured.set(part, this.measured(part) + 1);
    const value = this.#readers[part]();
    const entry = { at: this.#clock(), value };
    this.#cache.set(part, entry);
    // A failed reading is not handed to the next consumer: it measures again.
    value.catch(() => {
      if (this.#cache.get(part) === entry) this.#cache.delete(part);
    });
    return value;
  }

  async #readCpuTimes(): Promise<CpuTimes> {
    const text = await readText(path.join(this.#procDir, "stat"));
    return (text === undefined ? undefined : parseProcStat(text)) ?? osCpuTimes();
  }
}

interface PartValue {
  cpuTimes: CpuTimes;
  memory: MemoryFigures;
  loadAverage: LoadAverage;
  uptime: number;
  network: NetworkSample[];
  temperature: number | undefined;
  gpus: GpuPoint[];
  gpuInventory: GpuDiscovery;
  fileSystems: FsUsageEntry[];
}

/** Memory from os.*, where there is no /proc/meminfo (no swap figures there). */
function osMemory(): MemoryFigures {
  const total = os.totalmem();
  const used = Math.max(0, total - os.freemem());
  return {
    totalBytes: total,
    usedBytes: used,
    availableBytes: total - used,
    usage: total > 0 ? (used / total) * 100 : 0,
    swapTotalBytes: 0,
    swapUsedBytes: 0,
  };
}

/**
 * A CPU sampler with its own memory: each call measures the time since the previous call (the first
 * call, or one too soon after the last, over `firstSampleMs`). Over `machine`, or a sampler of its own.
 */
export function createCpuSampler(
  options: { procDir?: string; firstSampleMs?: number; machine?: MachineSampler } = {},
): () => Promise<number> {
  const machine =
    options.machine ?? new MachineSampler(options.procDir === undefined ? {} : { procDir: options.procDir });
  return machine.cpuMeter(
    options.firstSampleMs === undefined ? {} : { firstSampleMs: options.firstSampleMs },
  );
}

export interface Load {
  /** Busy share of all CPUs since the previous reading, in percent 0–100. */
  cpuUsage: number;
  /** Memory in use (total − available), MiB. */
  memoryUsedMb: number;
}

/**
 * A load reader for heartbeats: CPU use since its previous reading (a heartbeat's interval) and memory
 * in use. Cheap: /proc/stat and /proc/meminfo only, no subprocess, no lasting timer.
 */
export function createLoadReader(
  options: { machine?: MachineSampler; firstSampleMs?: number } = {},
): () => Promise<Load> {
  const machine = options.machine ?? new MachineSampler();
  const cpu = machine.cpuMeter(
    options.firstSampleMs === undefined ? {} : { firstSampleMs: options.firstSampleMs },
  );
  return async () => {
    const [cpuUsage, memory] = await Promise.all([cpu(), machine.memory()]);
    return { cpuUsage, memoryUsedMb: Math.round(memory.usedBytes / (1024 * 1024)) };
  };
}
