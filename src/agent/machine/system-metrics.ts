import { execFile } from "node:child_process";
import { access, readdir, readFile, stat } from "node:fs/promises";
import path from "node:path";
import { parseDuration } from "../../base/duration.ts";
import { defaults } from "../../defaults.ts";

/** The machine's figures as Linux shows them (/proc, /sys, vcgencmd), parsed; MachineSampler reads them. */

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

// ------------------------------------------------------------------------------------------- readers

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
  options: {
    /** Root of sysfs; default "/sys". */
    sysDir?: string;
    /**
     * `vcgencmd` (Raspberry Pi firmware), asked only when no thermal zone answers; a path, or false for
     * never. Default: "vcgencmd" when it is on PATH.
     */
    vcgencmd?: string | false;
    vcgencmdTimeoutMs?: number;
  } = {},
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
