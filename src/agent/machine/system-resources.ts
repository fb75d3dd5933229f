import os from "node:os";
import type { Resources } from "../../core/nodes/node.ts";
import { maxLayersFor } from "../../core/nodes/node-capacity.ts";
import { dropFileMounts, selectDisks } from "./file-systems.ts";
import type { GpuDiscoveryOptions } from "./gpu-discovery.ts";
import { MachineSampler } from "./machine-sampler.ts";

export interface SystemResourcesOptions {
  /** The node's machine sampler: its file system listing is the one metrics read. Default: one of its own. */
  machine?: MachineSampler;
  /** How GPUs are found (nvidia-smi path, timeout, output cap); for a sampler of its own only. */
  gpu?: GpuDiscoveryOptions;
  /**
   * `df` (behind si.fsSize) can hang on a dead network mount: give up on disks after this; default
   * `agentHardware.diskListTimeout`. For a sampler of its own only (a given `machine` has its own limit).
   */
  diskTimeoutMs?: number;
  /** Told about anything that could not be read (the figure is then left empty, never invented). */
  onWarning?: (message: string) => void;
}

/** What this machine has: CPU cores, memory, GPUs, disks, and the model layers it can hold (none used yet). */
export async function readSystemResources(options: SystemResourcesOptions = {}): Promise<Resources> {
  const warn = options.onWarning ?? (() => {});
  const machine =
    options.machine ??
    new MachineSampler({
      onWarning: warn,
      ...(options.diskTimeoutMs === undefined ? {} : { diskTimeoutMs: options.diskTimeoutMs }),
      ...(options.gpu === undefined ? {} : { gpuDiscovery: options.gpu }),
    });
  const [gpuResult, disks] = await Promise.all([
    machine.gpuInventory(),
    machine.fileSystems().then((listing) => dropFileMounts(selectDisks(listing))),
  ]);
  if (gpuResult.warning !== undefined) warn(`GPU discovery: ${gpuResult.warning}`);
  const memoryMb = totalMemoryMb();
  return {
    cpuCores: os.availableParallelism(),
    memoryMb,
    gpus: gpuResult.gpus,
    maxLayers: maxLayersFor(memoryMb, gpuResult.gpus),
    usedLayers: 0,
    disks,
  };
}

/**
 * Total memory in MiB: the machine's, or the cgroup limit the process runs under when that is smaller
 * (a container sees the host's memory in /proc/meminfo, but can only use its limit).
 */
export function totalMemoryMb(): number {
  const total = os.totalmem();
  const limit = process.constrainedMemory?.() ?? 0;
  const usable = limit > 0 && limit < total ? limit : total;
  return Math.floor(usable / (1024 * 1024));
}
