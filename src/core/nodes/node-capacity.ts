import type { Gpu } from "./node.ts";

/** Model layers a node can hold: one per this many MiB of GPU memory (or of system memory, without GPUs). */
export const mbPerLayer = 512;
export const maxLayersCap = 256;

/**
 * The rule for `maxLayers`: the memory that holds model layers — all GPU memory together when the node has
 * GPUs, system memory otherwise — divided by 512 MiB, clamped to [1, 256].
 */
export function maxLayersFor(memoryMb: number, gpus: readonly Gpu[]): number {
  const gpuMb = gpus.reduce((sum, gpu) => sum + gpu.memoryMb, 0);
  const layerMb = gpus.length > 0 ? gpuMb : memoryMb;
  return Math.min(maxLayersCap, Math.max(1, Math.floor(layerMb / mbPerLayer)));
}
