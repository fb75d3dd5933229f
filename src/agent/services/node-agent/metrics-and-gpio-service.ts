import { create } from "@bufbuild/protobuf";
import type { ServiceImpl } from "@connectrpc/connect";
import { CorralError, ErrorCode } from "../../../base/errors.ts";
import {
  DiskUsageSchema,
  GPIOAction,
  type GPIORequest,
  type GPIOResponse,
  GPIOResponseSchema,
  GPIOState,
  type HealthStatus,
  HealthStatusSchema,
  LoadAverageSchema,
  NetworkInterfaceStatsSchema,
  type NodeAgent,
  type SystemMetrics,
  SystemMetricsSchema,
} from "../../../gen/picontroller_pb.ts";
import { corralVersion } from "../../../version.ts";
import type { ConnectionStateName } from "../../connection-state.ts";
import { checkLevel, type GpioBackend, type GpioLevel } from "../../hardware/gpio/gpio-backend.ts";
import type { MachineSampler } from "../../machine/machine-sampler.ts";
import { createSystemMetricsReader, type SystemMetricsSample } from "../../machine/system-metrics-reader.ts";
import { type HealthReport, runHealthChecks } from "./health-checks.ts";

export interface MetricsAndGpioDeps {
  gpio: GpioBackend;
  /** Why this GPIO backend was chosen at start (GpioSelection.reason); shown by HealthCheck. */
  gpioReason?: string;
  /** The other hardware backends chosen at start; shown by HealthCheck. */
  hardware?: readonly { kind: string; backend: string; simulated: boolean; reason: string }[];
  nodeId: () => string;
  dataDir: string;
  /** When the agent started, ms since the epoch (HealthStatus.uptime_seconds counts from here). */
  startedAt: number;
  controllerState: () => ConnectionStateName;
  /** The node's machine sampler (shared with heartbeats and the metrics pusher); default: one of its own. */
  machine?: MachineSampler;
  /** The metrics reader; default: one over `machine`. */
  readMetrics?: () => Promise<SystemMetricsSample>;
  /** The health checks; default: runHealthChecks over these deps. */
  checkHealth?: () => Promise<HealthReport>;
}

const levelName = (level: GpioLevel) => (level === 1 ? "HIGH" : "LOW");

/** uint64 from a non-negative number (never negative, never fractional). */
const u64 = (value: number) => BigInt(Math.max(0, Math.floor(Number.isFinite(value) ? value : 0)));

export function toSystemMetricsMessage(sample: SystemMetricsSample, nodeId: string): SystemMetrics {
  return create(SystemMetricsSchema, {
    cpuUsage: sample.cpuUsage,
    memoryTotalBytes: u64(sample.memoryTotalBytes),
    memoryUsedBytes: u64(sample.memoryUsedBytes),
    memoryUsage: sample.memoryUsage,
    swapTotalBytes: u64(sample.swapTotalBytes),
    swapUsedBytes: u64(sample.swapUsedBytes),
    disks: sample.disks.map((disk) =>
      create(DiskUsageSchema, {
        mount: disk.mount,
        filesystem: disk.filesystem,
        totalBytes: u64(disk.totalBytes),
        usedBytes: u64(disk.usedBytes),
        usage: disk.usage,
      }),
    ),
    load: create(LoadAverageSchema, sample.load),
    uptimeSeconds: u64(sample.uptimeSeconds),
    network: sample.network.map((nic) =>
      create(NetworkInterfaceStatsSchema, {
        name: nic.name,
        rxBytes: u64(nic.rxBytes),
        txBytes: u64(nic.txBytes),
        rxPackets: u64(nic.rxPackets),
        txPackets: u64(nic.txPackets),
      }),
    ),
    ...(sample.temperatureCelsius === undefined ? {} : { temperatureCelsius: sample.temperatureCelsius }),
    timestamp: BigInt(sample.timestamp),
    nodeId,
    hostname: sample.hostname,
    cpuCount: sample.cpuCount,
    gpus: sample.gpus.map((gpu) => ({
      uuid: gpu.uuid,
      name: gpu.name,
      utilizationPercent: gpu.utilizationPercent,
      memoryUsedBytes: u64(gpu.memoryUsedBytes),
      memoryTotalBytes: u64(gpu.memoryTotalBytes),
      ...(gpu.temperatureCelsius === undefined ? {} : { temperatureCelsius: gpu.temperatureCelsius }),
    })),
  });
}

/** Runs one ControlGPIO request against the backend; the validation errors are INVALID_ARGUMENT. */
export async function controlGpio(
  gpio: GpioBackend,
  request: Pick<GPIORequest, "pin" | "state" | "action" | "pulseMs" | "chip">,
  signal?: AbortSignal,
): Promise<GPIOResponse> {
  const chip = request.chip === "" ? undefined : request.chip;
  const where = `${request.chip || gpio.chips[0] || "gpio"} line ${request.pin}`;
  let level: GpioLevel;
  let message: string;
  switch (request.action) {
    case GPIOAction.WRITE: {
      level = await gpio.write(request.pin, checkLevel(request.state), chip);
      message = `${where} driven ${levelName(level)}`;
      break;
    }
    case GPIOAction.READ: {
      level = await gpio.read(request.pin, chip);
      message = `${where} reads ${levelName(level)}`;
      break;
    }
    case GPIOAction.PULSE: {
      const pulseLevel = checkLevel(request.state);
      level = await gpio.pulse(request.pin, pulseLevel, request.pulseMs, chip, signal);
      message = `${where} pulsed ${levelName(pulseLevel)} for ${request.pulseMs} ms, now ${levelName(level)}`;
      break;
    }
    default:
      throw new CorralError(
        ErrorCode.InvalidArgument,
        `action: ${request.action} is not an action; use WRITE (0), READ (1) or PULSE (2)`,
        { details: { field: "action" } },
      );
  }
  return create(GPIOResponseSchema, {
    success: true,
    pin: request.pin,
    state: level === 1 ? GPIOState.HIGH : GPIOState.LOW,
    message,
    backend: gpio.kind,
  });
}

/**
 * GetSystemMetrics, ControlGPIO and HealthCheck of picontroller.NodeAgent. Errors are CorralErrors the
 * RPC layer maps to gRPC statuses: INVALID_ARGUMENT for a bad pin, state, action, pulse length or chip,
 * FAILED_PRECONDITION for a line another process holds, UNAVAILABLE when the hardware fails.
 */
export function metricsAndGpioService(
  deps: MetricsAndGpioDeps,
): Pick<ServiceImpl<typeof NodeAgent>, "getSystemMetrics" | "controlGPIO" | "healthCheck"> {
  const readMetrics =
    deps.readMetrics ??
    createSystemMetricsReader(deps.machine === undefined ? {} : { machine: deps.machine });
  const machine = deps.machine;
  const checkHealth =
    deps.checkHealth ??
    (() =>
      runHealthChecks({
        gpio: deps.gpio,
        controllerState: deps.controllerState,
        dataDir: deps.dataDir,
        ...(deps.gpioReason === undefined ? {} : { gpioReason: deps.gpioReason }),
        ...(deps.hardware === undefined ? {} : { hardware: deps.hardware }),
        // A health check answers for now, as GetSystemMetrics does (and its reading is then shared).
        ...(machine === undefined
          ? {}
          : { temperature: () => machine.temperature(0), memory: () => machine.memory(0) }),
      }));

  return {
    async getSystemMetrics(): Promise<SystemMetrics> {
      return toSystemMetricsMessage(await readMetrics(), deps.nodeId());
    },

    async controlGPIO(request, context): Promise<GPIOResponse> {
      return controlGpio(deps.gpio, request, context.signal);
    },

    async healthCheck(): Promise<HealthStatus> {
      const report = await checkHealth();
      const now = Date.now();
      return create(HealthStatusSchema, {
        status: report.status,
        checks: report.checks,
        version: corralVersion,
        uptimeSeconds: u64((now - deps.startedAt) / 1000),
        gpioBackend: deps.gpio.kind,
        nodeId: deps.nodeId(),
        timestamp: BigInt(now),
      });
    },
  };
}
