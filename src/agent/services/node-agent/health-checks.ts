import { mkdir, readFile, statfs } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { defaults } from "../../../defaults.ts";
import type { ConnectionStateName } from "../../connection-state.ts";
import type { GpioBackend } from "../../hardware/gpio/gpio-backend.ts";
import { createTemperatureReader, memoryFromMeminfo, parseMeminfo } from "../../machine/system-metrics.ts";

export type HealthLevel = "OK" | "DEGRADED" | "UNHEALTHY";

export interface CheckResult {
  name: string;
  status: HealthLevel;
  message: string;
}

export interface HealthReport {
  status: HealthLevel;
  checks: CheckResult[];
}

export interface HealthThresholds {
  diskFreeDegradedPercent: number;
  diskFreeUnhealthyPercent: number;
  memoryDegradedPercent: number;
  memoryUnhealthyPercent: number;
  temperatureDegradedCelsius: number;
  temperatureUnhealthyCelsius: number;
}

export const defaultHealthThresholds: HealthThresholds = defaults.agentHardware.health;

const rank: Readonly<Record<HealthLevel, number>> = { OK: 0, DEGRADED: 1, UNHEALTHY: 2 };

/** The worst of the levels; OK for none. */
export function worst(levels: Iterable<HealthLevel>): HealthLevel {
  let result: HealthLevel = "OK";
  for (const level of levels) if (rank[level] > rank[result]) result = level;
  return result;
}

// ------------------------------------------------------------------------------------------- rules

export function controllerCheck(state: ConnectionStateName): CheckResult {
  const name = "controller";
  switch (state) {
    case "CONNECTED":
      return { name, status: "OK", message: "connected to the controller" };
    case "DISCONNECTED":
      return { name, status: "DEGRADED", message: "not connected to the controller; retrying" };
    case "UNAUTHENTICATED":
      return {
        name,
        status: "DEGRADED",
        message: "the controller has not accepted this node's identity (not joined, pending, or revoked)",
      };
  }
}

const gib = 1024 ** 3;
const formatGiB = (bytes: number) => `${(bytes / gib).toFixed(1)} GiB`;

/** Free space of the data dir's file system: below 5 % DEGRADED, below 1 % UNHEALTHY (by default). */
export function diskCheck(
  space: { freeBytes: number; totalBytes: number; path: string },
  thresholds: HealthThresholds = defaultHealthThresholds,
): CheckResult {
  const name = "disk";
  if (!(space.totalBytes > 0)) {
    return { name, status: "DEGRADED", message: `cannot tell the size of the file system of ${space.path}` };
  }
  const freePercent = (space.freeBytes / space.totalBytes) * 100;
  const figures = `${formatGiB(space.freeBytes)} of ${formatGiB(space.totalBytes)} free (${freePercent.toFixed(1)}%) on ${space.path}`;
  if (freePercent < thresholds.diskFreeUnhealthyPercent) {
    return {
      name,
      status: "UNHEALTHY",
      message: `${figures}; below ${thresholds.diskFreeUnhealthyPercent}%`,
    };
  }
  if (freePercent < thresholds.diskFreeDegradedPercent) {
    return { name, status: "DEGRADED", message: `${figures}; below ${thresholds.diskFreeDegradedPercent}%` };
  }
  return { name, status: "OK", message: figures };
}

/** Memory in use (total − available): from 90 % DEGRADED, from 98 % UNHEALTHY (by default). */
export function memoryCheck(
  memory: { totalBytes: number; availableBytes: number },
  thresholds: HealthThresholds = defaultHealthThresholds,
): CheckResult {
  const name = "memory";
  if (!(memory.totalBytes > 0)) return { name, status: "DEGRADED", message: "cannot read memory figures" };
  const usedPercent = ((memory.totalBytes - memory.availableBytes) / memory.totalBytes) * 100;
  const figures = `${usedPercent.toFixed(1)}% in use, ${formatGiB(memory.availableBytes)} available of ${formatGiB(memory.totalBytes)}`;
  if (usedPercent >= thresholds.memoryUnhealthyPercent) {
    return {
      name,
      status: "UNHEALTHY",
      message: `${figures}; at or above ${thresholds.memoryUnhealthyPercent}%`,
    };
  }
  if (usedPercent >= thresholds.memoryDegradedPercent) {
    return {
      name,
      status: "DEGRADED",
      message: `${figures}; at or above ${thresholds.memoryDegradedPercent}%`,
    };
  }
  return { name, status: "OK", message: figures };
}

/** Board temperature: from 80 °C DEGRADED, from 90 °C UNHEALTHY (by default); no check without a sensor. */
export function temperatureCheck(
  celsius: number | undefined,
  thresholds: HealthThresholds = defaultHealthThresholds,
): CheckResult | undefined {
  if (celsius === undefined) return undefined;
  const name = "temperature";
  const figure = `${celsius.toFixed(1)} °C`;
  if (celsius >= thresholds.temperatureUnhealthyCelsius) {
    return {
      name,
      status: "UNHEALTHY",
      message: `${figure}; at or above ${thresholds.temperatureUnhealthyCelsius} °C`,
    };
  }
  if (celsius >= thresholds.temperatureDegradedCelsius) {
    return {
      name,
      status: "DEGRADED",
      message: `${figure}; at or above ${thresholds.temperatureDegradedCelsius} °C`,
    };
  }
  return { name, status: "OK", message: figure };
}

/** The GPIO backend answers its probe (a harmless check that touches no line). */
export async function gpioCheck(gpio: GpioBackend, reason?: string): Promise<CheckResult> {
  const name = "gpio";
  try {
    const why = reason === undefined || reason === "" ? "" : ` (${reason})`;
    return { name, status: "OK", message: `${gpio.kind}: ${await gpio.probe()}${why}` };
  } catch (error) {
    const why = error instanceof Error ? error.message : String(error);
    return { name, status: "DEGRADED", message: `${gpio.kind} backend failing: ${why}` };
  }
}

// ------------------------------------------------------------------------------------------- running

/** The backend chosen at start for each kind of hardware (PWM, SPI, I²C, analog), as one check. */
export function hardwareCheck(
  choices: readonly { kind: string; backend: string; simulated: boolean; reason: string }[],
): CheckResult {
  const list = choices
    .filter((choice) => choice.kind !== "gpio")
    .map(
      (choice) =>
        `${choice.kind}: ${choice.backend}${choice.simulated ? " (simulated)" : ""} — ${choice.reason}`,
    );
  return { name: "hardware", status: "OK", message: list.join("; ") };
}

export interface HealthCheckOptions {
  gpio: GpioBackend;
  /** The hardware backends chosen at start (PWM, SPI, I²C, analog), reported as the "hardware" check. */
  hardware?: readonly { kind: string; backend: string; simulated: boolean; reason: string }[];
  /** Why this GPIO backend was chosen at start (GpioSelection.reason), shown in the gpio check. */
  gpioReason?: string;
  controllerState: () => ConnectionStateName;
  dataDir: string;
  thresholds?: HealthThresholds;
  /** Root of the proc file system; default "/proc". */
  procDir?: string;
  /** Free and total bytes of the file system holding `dir`; default: statfs. */
  diskSpace?: (dir: string) => Promise<{ freeBytes: number; totalBytes: number }>;
  /** Board temperature; default: thermal zones, then vcgencmd. */
  temperature?: () => Promise<number | undefined>;
  /** Memory now (the node's machine sampler); default: `procDir`/meminfo. */
  memory?: () => Promise<{ totalBytes: number; availableBytes: number }>;
}

async function statfsSpace(dir: string): Promise<{ freeBytes: number; totalBytes: number }> {
  // The data dir may not exist yet on a fresh node: create it (the agent will anyway).
  await mkdir(dir, { recursive: true });
  const stats = await statfs(dir);
  return { freeBytes: stats.bavail * stats.bsize, totalBytes: stats.blocks * stats.bsize };
}

async function readMemory(procDir: string): Promise<{ totalBytes: number; availableBytes: number }> {
  try {
    const figures = memoryFromMeminfo(parseMeminfo(await readFile(path.join(procDir, "meminfo"), "utf8")));
    if (figures !== undefined) return figures;
  } catch {
    // no /proc: fall through
  }
  return { totalBytes: os.totalmem(), availableBytes: os.freemem() };
}

const defaultTemperature = createTemperatureReader();

/**
 * Runs every check: controller connection, disk space of the data dir, memory pressure, the GPIO backend,
 * and the temperature where the board has a sensor. The overall status is the worst; a check that throws
 * counts as DEGRADED with its error as the message.
 */
export async function runHealthChecks(options: HealthCheckOptions): Promise<HealthReport> {
  const thresholds = options.thresholds ?? defaultHealthThresholds;
  const guarded = async (name: string, check: () => Promise<CheckResult | undefined>) => {
    try {
      return await check();
    } catch (error) {
      const why = error instanceof Error ? error.message : String(error);
      return { name, status: "DEGRADED" as const, message: `check failed: ${why}` };
    }
  };
  const results = await Promise.all([
    guarded("controller", async () => controllerCheck(options.controllerState())),
    guarded("disk", async () => {
      const space = await (options.diskSpace ?? statfsSpace)(options.dataDir);
      return diskCheck({ ...space, path: options.dataDir }, thresholds);
    }),
    guarded("memory", async () =>
      memoryCheck(await (options.memory?.() ?? readMemory(options.procDir ?? "/proc")), thresholds),
    ),
    guarded("gpio", () => gpioCheck(options.gpio, options.gpioReason)),
    guarded("hardware", async () =>
      options.hardware === undefined ? undefined : hardwareCheck(options.hardware),
    ),
    guarded("temperature", async () =>
      temperatureCheck(await (options.temperature ?? defaultTemperature)(), thresholds),
    ),
  ]);
  const checks = results.filter((result): result is CheckResult => result !== undefined);
  return { status: worst(checks.map((check) => check.status)), checks };
}
