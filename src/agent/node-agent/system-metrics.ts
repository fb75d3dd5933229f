import { execFile } from "node:child_process";
import { access, readdir, readFile, stat } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { fsSize } from "systeminformation/lib/filesystem.js";
import { parseDuration } from "../../base/duration.ts";
import type { GpuPoint } from "../../core/metrics-history.ts";
import { defaults } from "../../defaults.ts";
import { createGpuReader } from "../gpu-metrics.ts";
import { type FsEntry, selectDisks } from "../system-resources.ts";

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

export interface DiskSample {
  mount: string;
  filesystem: string;
  totalBytes: number;
  usedBytes: number;
  /** Percent, 0–100. */
  usage: number;
}

export interface NetworkSample {
  name: string;
  rxBytes: number;
  txBytes: number;
  rxPackets: number;
  txPackets: number;
}

// ------------------------------------------------------------------------------------------- parsers

/** /proc/meminfo as bytes by key ("MemTotal: 16318480 kB" → MemTotal: 16710123520). */
export function parseMeminfo(text: string): Map<string, number> {
  const values = new Map<string, number>();
  for (const line of text.split(/\r?\n/)) {
    const match = /^([A-Za-z0-9_()]+):\s+(\d+)(?:\s+(kB))?\s*$/.exec(line);
    if (match === null) continue;
    const amount = Number(match[2]);
    values.set(match[1] ?? "", match[3] === undefined ? amount : amount * 1024);
  }
  return values;
}

export interface MemoryFigures {
  totalBytes: number;
  usedBytes: number;
  availableBytes: number;
  /** Percent in use, 0–100. */
  usage: number;
  swapTotalBytes: number;
  swapUsedBytes: number;
}

/**
 * Memory in use is MemTotal − MemAvailable (what `free` calls "used" plus reclaimable caches excluded);
 * kernels before 3.14 have no MemAvailable, then MemFree + Buffers + Cached stands in for it.
 */
export function memoryFromMeminfo(info: ReadonlyMap<string, number>): MemoryFigures | undefined {
  const total = info.get("MemTotal");
  if (total === undefined || total <= 0) return undefined;
  const available =
    info.get("MemAvailable") ??
    (info.get("MemFree") ?? 0) + (info.get("Buffers") ?? 0) + (info.get("Cached") ?? 0);
  const clampedAvailable = Math.min(total, Math.max(0, available));
  const used = total - clampedAvailable;
  const swapTotal = info.get("SwapTotal") ?? 0;
  const swapFree = info.get("SwapFree") ?? swapTotal;
  return {
    totalBytes: total,
    usedBytes: used,
    availableBytes: clampedAvailable,
    usage: (used / total) * 100,
    swapTotalBytes: swapTotal,
    swapUsedBytes: Math.max(0, swapTotal - swapFree),
  };
}

export interface CpuTimes {
  /** Jiffies spent busy (everything but idle and iowait). */
  busy: number;
  total: number;
}

/**
 * The aggregate "cpu" line of /proc/stat: user nice system idle iowait irq softirq steal guest guest_nice.
 * guest and guest_nice are already counted in user and nice, so they are left out of the total.
 */
export function parseProcStat(text: string): CpuTimes | undefined {
  const line = text.split(/\r?\n/).find((candidate) => /^cpu\s/.test(candidate));
  if (line === undefined) return undefined;
  const fields = line.trim().split(/\s+/).slice(1, 9).map(Number);
  if (fields.length < 4 || fields.some((value) => !Number.isFinite(value))) return undefined;
  const [user = 0, nice = 0, system = 0, idle = 0, iowait = 0, irq = 0, softirq = 0, steal = 0] = fields;
  const idleAll = idle + iowait;
  const total = user + nice + system + idleAll + irq + softirq + steal;
  return { busy: total - idleAll, total };
}

/** Busy percent between two samples, 0–100; 0 when no time passed. */
export function cpuUsageBetween(previous: CpuTimes, now: CpuTimes): number {
  const total = now.total - previous.total;
  const busy = now.busy - previous.busy;
  if (!(total > 0)) return 0;
  return Math.min(100, Math.max(0, (busy / total) * 100));
}

/**
 * /proc/net/dev: two header lines, then "  eth0: rxBytes rxPackets errs drop fifo frame compressed
 * multicast txBytes txPackets ...". The name and the first number may touch ("eth0:123").
 */
export function parseNetDev(text: string): NetworkSample[] {
  const interfaces: NetworkSample[] = [];
  for (const line of text.split(/\r?\n/)) {
    const match = /^\s*([^:\s|]+):\s*(.*)$/.exec(line);
    if (match === null) continue;
    const fields = (match[2] ?? "").trim().split(/\s+/).map(Number);
    if (fields.length < 10 || fields.some((value) => !Number.isFinite(value))) continue;
    interfaces.push({
      name: match[1] ?? "",
      rxBytes: fields[0] ?? 0,
      rxPackets: fields[1] ?? 0,
      txBytes: fields[8] ?? 0,
      txPackets: fields[9] ?? 0,
    });
  }
  return interfaces;
}

/** /proc/loadavg: "0.52 0.58 0.59 2/1234 5678". */
export function parseLoadavg(text: string): { load1: number; load5: number; load15: number } | undefined {
  const [load1, load5, load15] = text.trim().split(/\s+/).slice(0, 3).map(Number);
  if (load1 === undefined || load5 === undefined || load15 === undefined) return undefined;
  if (![load1, load5, load15].every(Number.isFinite)) return undefined;
  return { load1, load5, load15 };
}

/** /proc/uptime: "350735.47 234388.90" → whole seconds since boot. */
export function parseUptime(text: string): number | undefined {
  const first = text.trim().split(/\s+/)[0] ?? "";
  const seconds = first === "" ? Number.NaN : Number(first);
  return Number.isFinite(seconds) && seconds >= 0 ? Math.floor(seconds) : undefined;
}

export interface ThermalZone {
  /** Contents of thermal_zoneN/type ("cpu-thermal", "x86_pkg_temp", "acpitz"). */
  type: string;
  /** Contents of thermal_zoneN/temp: millidegrees Celsius. */
  temp: string;
}

/** Zone types that measure the CPU / SoC; preferred over board or battery sensors. */
const cpuZoneTypes =
  /^(cpu|soc|x86_pkg_temp|coretemp|k10temp|cpu[-_]thermal|cpu\d*[-_]?thermal|bcm2835_thermal)/i;

/**
 * The board temperature from thermal zones: the hottest CPU/SoC zone when there is one, else the hottest
 * zone. Values are millidegrees; unreadable or implausible readings (below −40 °C, above 150 °C) are
 * skipped. Undefined when none is left.
 */
export function temperatureFromZones(zones: readonly ThermalZone[]): number | undefined {
  const readings = zones.flatMap((zone) => {
    const milli = Number(zone.temp.trim());
    if (zone.temp.trim() === "" || !Number.isFinite(milli)) return [];
    const celsius = milli / 1000;
    if (celsius < -40 || celsius > 150) return [];
    return [{ cpu: cpuZoneTypes.test(zone.type.trim()), celsius }];
  });
  const cpu = readings.filter((reading) => reading.cpu);
  const pool = cpu.length > 0 ? cpu : readings;
  if (pool.length === 0) return undefined;
  return Math.max(...pool.map((reading) => reading.celsius));
}

/** `vcgencmd measure_temp` → "temp=47.2'C". */
export function parseVcgencmdTemp(text: string): number | undefined {
  const match = /temp=(-?\d+(?:\.\d+)?)\s*['°]?C/.exec(text);
  if (match === null) return undefined;
  const celsius = Number(match[1]);
  return Number.isFinite(celsius) ? celsius : undefined;
}

/** fsSize() entries with usage, the ones `selectDisks` keeps (real file systems, one per device). */
export interface FsUsageEntry extends FsEntry {
  used: number;
  available?: number;
}

export function disksFromFsSize(entries: readonly FsUsageEntry[]): DiskSample[] {
  const byMount = new Map(entries.map((entry) => [entry.mount, entry]));
  return selectDisks(entries).flatMap((disk) => {
    const entry = byMount.get(disk.mount);
    if (entry === undefined) return [];
    const used = Number.isFinite(entry.used) && entry.used > 0 ? entry.used : 0;
    return [
      {
        mount: disk.mount,
        filesystem: entry.fs,
        totalBytes: disk.sizeBytes,
        usedBytes: used,
        usage: Math.min(100, (used / disk.sizeBytes) * 100),
      },
    ];
  });
}

// ------------------------------------------------------------------------------------------- readers

export interface SystemMetricsOptions {
  /** Root of the proc file system; default "/proc". */
  procDir?: string;
  /** Root of sysfs; default "/sys". */
  sysDir?: string;
  /**
   * `vcgencmd` (Raspberry Pi firmware), asked for the temperature only when no thermal zone answers;
   * a path, or false for never. Default: "vcgencmd" when it is on PATH.
   */
  vcgencmd?: string | false;
  vcgencmdTimeoutMs?: number;
  /** The file system listing (systeminformation's fsSize by default), for tests. */
  listFileSystems?: () => Promise<FsUsageEntry[]>;
  diskTimeoutMs?: number;
  /** The first sample of CPU use waits this long between its two readings; default 100 ms. */
  firstSampleMs?: number;
  /** nvidia-smi: a name on PATH or a path; false for no GPU figures. Default "nvidia-smi". */
  nvidiaSmi?: string | false;
  onWarning?: (message: string) => void;
}

async function readText(file: string): Promise<string | undefined> {
  try {
    return await readFile(file, "utf8");
  } catch {
    return undefined;
  }
}

/** The thermal zones under `sysDir`/class/thermal, with their type and temperature text. */
export async function readThermalZones(sysDir = "/sys"): Promise<ThermalZone[]> {
  const base = path.join(sysDir, "class", "thermal");
  let names: string[];
  try {
    names = (await readdir(base)).filter((name) => /^thermal_zone\d+$/.test(name));
  } catch {
    return [];
  }
  const zones = await Promise.all(
    names.map(async (name) => {
      const [type, temp] = await Promise.all([
        readText(path.join(base, name, "type")),
        readText(path.join(base, name, "temp")),
      ]);
      return temp === undefined ? undefined : { type: type ?? "", temp };
    }),
  );
  return zones.filter((zone): zone is ThermalZone => zone !== undefined);
}

/** An executable named `name` on PATH, or undefined. */
async function findOnPath(name: string): Promise<string | undefined> {
  for (const dir of (process.env.PATH ?? "").split(path.delimiter)) {
    if (dir === "") continue;
    const candidate = path.join(dir, name);
    try {
      await access(candidate, 1 /* X_OK */);
      if ((await stat(candidate)).isFile()) return candidate;
    } catch {
      // not here
    }
  }
  return undefined;
}

function runCapture(program: string, args: string[], timeoutMs: number): Promise<string | undefined> {
  return new Promise((resolve) => {
    execFile(
      program,
      args,
      { timeout: timeoutMs, killSignal: "SIGKILL", maxBuffer: 64 * 1024, encoding: "utf8" },
      (error, stdout) => resolve(error === null ? stdout : undefined),
    );
  });
}

/**
 * A temperature reader: thermal zones first, then `vcgencmd measure_temp` where present. Undefined when
 * the board has no readable sensor.
 */
export function createTemperatureReader(
  options: Pick<SystemMetricsOptions, "sysDir" | "vcgencmd" | "vcgencmdTimeoutMs"> = {},
): () => Promise<number | undefined> {
  let vcgencmd: Promise<string | undefined> | undefined;
  const timeoutMs = options.vcgencmdTimeoutMs ?? parseDuration(defaults.agentHardware.vcgencmdTimeout);
  return async () => {
    const fromZones = temperatureFromZones(await readThermalZones(options.sysDir));
    if (fromZones !== undefined) return fromZones;
    if (options.vcgencmd === false) return undefined;
    vcgencmd ??= options.vcgencmd === undefined ? findOnPath("vcgencmd") : Promise.resolve(options.vcgencmd);
    const program = await vcgencmd;
    if (program === undefined) return undefined;
    const output = await runCapture(program, ["measure_temp"], timeoutMs);
    return output === undefined ? undefined : parseVcgencmdTemp(output);
  };
}

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
 * A CPU sampler with its own memory: each call measures the time since the previous call. The first call,
 * or one too soon after the last to show any CPU time, waits `firstSampleMs` between two readings.
 * Reads /proc/stat, or os.cpus() where there is none.
 */
export function createCpuSampler(
  options: { procDir?: string; firstSampleMs?: number } = {},
): () => Promise<number> {
  const statFile = path.join(options.procDir ?? "/proc", "stat");
  const sampleMs = options.firstSampleMs ?? 100;
  let previous: CpuTimes | undefined;
  const read = async (): Promise<CpuTimes> => {
    const text = await readText(statFile);
    return (text === undefined ? undefined : parseProcStat(text)) ?? osCpuTimes();
  };
  return async () => {
    let now = await read();
    if (previous === undefined || now.total - previous.total <= 0) {
      previous = now;
      await new Promise<void>((resolve) => setTimeout(resolve, sampleMs));
      now = await read();
    }
    const usage = cpuUsageBetween(previous, now);
    previous = now;
    return usage;
  };
}

async function listFileSystemsWithTimeout(
  list: () => Promise<FsUsageEntry[]>,
  timeoutMs: number,
  warn: (message: string) => void,
): Promise<DiskSample[]> {
  let timer: NodeJS.Timeout | undefined;
  const timedOut = new Promise<"timeout">((resolve) => {
    timer = setTimeout(() => resolve("timeout"), timeoutMs);
  });
  try {
    const listing = await Promise.race([list(), timedOut]);
    if (listing === "timeout") {
      warn(`disks: listing file systems took longer than ${timeoutMs} ms; reporting no disks`);
      return [];
    }
    return disksFromFsSize(listing);
  } catch (error) {
    warn(`disks: ${error instanceof Error ? error.message : String(error)}; reporting no disks`);
    return [];
  } finally {
    clearTimeout(timer);
  }
}

/**
 * A reader of the node's metrics. Keep one per agent: its CPU figure covers the time since its previous
 * call. Figures come from `procDir` (/proc) and `sysDir` (/sys), os.* where those are missing; nothing is
 * invented: an unreadable figure is 0 (and told to onWarning), a missing sensor leaves the temperature out.
 */
export function createSystemMetricsReader(
  options: SystemMetricsOptions = {},
): () => Promise<SystemMetricsSample> {
  const procDir = options.procDir ?? "/proc";
  const warn = options.onWarning ?? (() => {});
  const cpu = createCpuSampler({
    procDir,
    ...(options.firstSampleMs === undefined ? {} : { firstSampleMs: options.firstSampleMs }),
  });
  const temperature = createTemperatureReader(options);
  const listFileSystems = options.listFileSystems ?? (() => fsSize() as Promise<FsUsageEntry[]>);
  const diskTimeoutMs = options.diskTimeoutMs ?? parseDuration(defaults.agentHardware.diskListTimeout);
  const gpus = createGpuReader(options.nvidiaSmi ?? "nvidia-smi");

  return async () => {
    const [cpuUsage, meminfo, netdev, loadavg, uptime, celsius, disks, gpuPoints] = await Promise.all([
      cpu(),
      readText(path.join(procDir, "meminfo")),
      readText(path.join(procDir, "net", "dev")),
      readText(path.join(procDir, "loadavg")),
      readText(path.join(procDir, "uptime")),
      temperature(),
      listFileSystemsWithTimeout(listFileSystems, diskTimeoutMs, warn),
      gpus(),
    ]);
    let memory = meminfo === undefined ? undefined : memoryFromMeminfo(parseMeminfo(meminfo));
    if (memory === undefined) {
      const total = os.totalmem();
      const used = Math.max(0, total - os.freemem());
      memory = {
        totalBytes: total,
        usedBytes: used,
        availableBytes: total - used,
        usage: total > 0 ? (used / total) * 100 : 0,
        swapTotalBytes: 0,
        swapUsedBytes: 0,
      };
    }
    const [load1 = 0, load5 = 0, load15 = 0] = os.loadavg();
    return {
      cpuUsage,
      memoryTotalBytes: memory.totalBytes,
      memoryUsedBytes: memory.usedBytes,
      memoryUsage: memory.usage,
      swapTotalBytes: memory.swapTotalBytes,
      swapUsedBytes: memory.swapUsedBytes,
      disks,
      load: (loadavg === undefined ? undefined : parseLoadavg(loadavg)) ?? { load1, load5, load15 },
      uptimeSeconds: (uptime === undefined ? undefined : parseUptime(uptime)) ?? Math.floor(os.uptime()),
      network: netdev === undefined ? [] : parseNetDev(netdev),
      temperatureCelsius: celsius,
      timestamp: Date.now(),
      hostname: os.hostname(),
      cpuCount: os.cpus().length,
      gpus: gpuPoints,
    };
  };
}

/** The agent's metrics reader (its CPU figure covers the time since the previous call of this function). */
export const readSystemMetrics: () => Promise<SystemMetricsSample> = createSystemMetricsReader();
