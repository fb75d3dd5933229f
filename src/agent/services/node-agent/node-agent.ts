import type { ServiceImpl } from "@connectrpc/connect";
import type { HardwareService } from "../../../gen/corral/v1/hardware_pb.ts";
import type { NodeAgent } from "../../../gen/picontroller_pb.ts";
import { LogSourceRegistry } from "../../../host/logs/log-source-registry.ts";
import type { AgentLogRing } from "../../../host/logs/ring-log-source.ts";
import type { Logger } from "../../../observability/logger.ts";
import type { ConnectionStateName } from "../../connection-state.ts";
import type { GpioBackend } from "../../hardware/gpio/gpio-backend.ts";
import { createGpioBackend } from "../../hardware/gpio/select-backend.ts";
import { createHardware, type Hardware } from "../../hardware/hardware.ts";
import type { MachineSampler } from "../../machine/machine-sampler.ts";
import { hardwareService } from "../hardware-service.ts";
import { CommandExecutor } from "./exec/command-executor.ts";
import { execAndLogsService } from "./exec-and-logs-service.ts";
import { metricsAndGpioService } from "./metrics-and-gpio-service.ts";

export interface NodeAgentOptions {
  readonly dataDir: string;
  readonly nodeId: () => string;
  readonly controllerState: () => ConnectionStateName;
  readonly logger: Logger;
  /** The node's own log lines (fed by the logger's tee). */
  readonly logRing: AgentLogRing;
  /** The node's machine sampler, shared with its heartbeats and metrics pusher (GetSystemMetrics, HealthCheck). */
  readonly machine?: MachineSampler;
}

/** Pi-Controller's NodeAgent on this machine: metrics, GPIO, allow-listed exec and logs, with their parts. */
export interface LocalNodeAgent extends AsyncDisposable {
  readonly impl: ServiceImpl<typeof NodeAgent>;
  /** corral.v1.HardwareService over this node's hardware (GPIO, PWM, SPI, I²C, analog). */
  readonly hardwareImpl: ServiceImpl<typeof HardwareService>;
  readonly hardware: Hardware;
  readonly gpio: GpioBackend;
  readonly gpioKind: string;
  readonly logs: LogSourceRegistry;
  close(): Promise<void>;
}

/**
 * Builds the NodeAgent for this node: the GPIO backend is chosen once, at start (the kernel's GPIO
 * character device where the node has one, a simulated bank elsewhere), and shown by HealthCheck.
 */
export async function createNodeAgent(options: NodeAgentOptions): Promise<LocalNodeAgent> {
  const selection = await createGpioBackend({
    dataDir: options.dataDir,
    onWarning: (message: string) => options.logger.warn(message),
  });
  options.logger.info({ gpio: selection.kind, reason: selection.reason }, "GPIO backend chosen");
  let hardware: Hardware;
  try {
    hardware = await createHardware({
      gpio: selection,
      onWarning: (message: string) => options.logger.warn(message),
    });
  } catch (error) {
    await selection.backend.close();
    throw error;
  }
  for (const choice of hardware.choices.slice(1)) {
    options.logger.info(
      { [choice.kind]: choice.backend, reason: choice.reason },
      `${choice.kind} backend chosen`,
    );
  }
  const hardwareImpl = hardwareService({
    hardware,
    nodeId: options.nodeId,
    // Every hardware write is in the node's audit trail (the controller audits the call it relays too).
    audit: (entry) =>
      options.logger.info({ audit: entry }, `hardware ${entry.action} ${entry.target}: ${entry.detail}`),
  });
  const logs = new LogSourceRegistry({ agent: options.logRing, journal: "detect" });
  const executor = new CommandExecutor({
    logger: options.logger,
    audit: (entry) => options.logger.info({ audit: entry }, `exec ${entry.command}: ${entry.outcome}`),
  });
  const impl: ServiceImpl<typeof NodeAgent> = {
    ...metricsAndGpioService({
      gpio: selection.backend,
      gpioReason: selection.reason,
      hardware: hardware.choices,
      nodeId: options.nodeId,
      dataDir: options.dataDir,
      startedAt: Date.now(),
      controllerState: options.controllerState,
      ...(options.machine === undefined ? {} : { machine: options.machine }),
    }),
    ...execAndLogsService({ executor, logs }),
  };
  return {
    impl,
    hardwareImpl,
    hardware,
    gpio: selection.backend,
    gpioKind: selection.kind,
    logs,
    close: () => hardware.close(),
    [Symbol.asyncDispose]: () => hardware.close(),
  };
}
