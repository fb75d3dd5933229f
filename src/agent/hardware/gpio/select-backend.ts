import { readdir } from "node:fs/promises";
import path from "node:path";
import { CorralError, ErrorCode } from "../../../base/errors.ts";
import { defaults } from "../../../defaults.ts";
import type { GpioBackend, GpioBackendKind } from "./gpio-backend.ts";
import { GpiochipGpio } from "./gpiochip-gpio.ts";
import { SimulatedGpio } from "./simulated-gpio.ts";

export type GpioPreference = "auto" | "gpiochip" | "simulated";

export interface CreateGpioBackendOptions {
  /** The agent's data dir: the simulated bank keeps its levels there. */
  dataDir: string;
  /** "auto" (default): the real chip when there is one and the tools work, else simulated. */
  prefer?: GpioPreference;
  /** Where gpiochip devices are looked for; default "/dev". */
  devDir?: string;
  /** Folder of the libgpiod tools; default: PATH. */
  toolDir?: string;
  toolTimeoutMs?: number;
  holdConfirmTimeoutMs?: number;
  /** Lines of the simulated bank; default 54. */
  simulatedLines?: number;
  onWarning?: (message: string) => void;
}

export interface GpioSelection {
  backend: GpioBackend;
  kind: GpioBackendKind;
  /** Why this backend, in words (shown by HealthCheck). */
  reason: string;
}

/** The gpiochipN character devices in `devDir`, sorted by number. */
export async function listGpiochips(devDir: string): Promise<string[]> {
  let names: string[];
  try {
    names = await readdir(devDir);
  } catch {
    return [];
  }
  return names
    .filter((name) => /^gpiochip\d+$/.test(name))
    .sort((a, b) => Number(a.slice(8)) - Number(b.slice(8)));
}

/**
 * Picks the node's GPIO backend at start: the kernel GPIO character device through the libgpiod tools
 * when `devDir` has a gpiochip and the tools work, the simulated bank otherwise. With `prefer: "gpiochip"`
 * a missing chip or broken tools fail the start (FAILED_PRECONDITION) instead of falling back.
 */
export async function createGpioBackend(options: CreateGpioBackendOptions): Promise<GpioSelection> {
  const prefer = options.prefer ?? (defaults.agentHardware.gpio as GpioPreference);
  const devDir = options.devDir ?? "/dev";
  const simulated = async (reason: string): Promise<GpioSelection> => {
    const backend = await SimulatedGpio.open({
      lines: options.simulatedLines ?? defaults.agentHardware.simulatedGpioLines,
      statePath: path.join(options.dataDir, defaults.agentHardware.simulatedGpioStateFile),
      ...(options.onWarning === undefined ? {} : { onWarning: options.onWarning }),
    });
    return { backend, kind: "simulated", reason };
  };

  if (prefer === "simulated") return simulated("simulated GPIO by configuration");

  const devices = await listGpiochips(devDir);
  if (devices.length === 0) {
    const reason = `no GPIO character device (${path.join(devDir, "gpiochip*")})`;
    if (prefer === "gpiochip") throw new CorralError(ErrorCode.FailedPrecondition, `GPIO: ${reason}`);
    return simulated(`simulated GPIO: ${reason}`);
  }
  try {
    const backend = await GpiochipGpio.open({
      ...(options.toolDir === undefined ? {} : { toolDir: options.toolDir }),
      ...(options.toolTimeoutMs === undefined ? {} : { timeoutMs: options.toolTimeoutMs }),
      ...(options.holdConfirmTimeoutMs === undefined
        ? {}
        : { holdConfirmTimeoutMs: options.holdConfirmTimeoutMs }),
    });
    return {
      backend,
      kind: "gpiochip",
      reason: `kernel GPIO character device: ${backend.chips.join(", ")} (libgpiod tools v${backend.major})`,
    };
  } catch (error) {
    const why = error instanceof Error ? error.message : String(error);
    if (prefer === "gpiochip") {
      throw new CorralError(ErrorCode.FailedPrecondition, `GPIO: ${devices.join(", ")} present but ${why}`, {
        cause: error,
      });
    }
    options.onWarning?.(
      `GPIO: ${devices.join(", ")} present but the libgpiod tools failed (${why}); simulating`,
    );
    return simulated(`simulated GPIO: ${devices.join(", ")} present but the libgpiod tools failed: ${why}`);
  }
}
