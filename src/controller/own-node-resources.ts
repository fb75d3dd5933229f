import { setTimeout as sleep } from "node:timers/promises";
import type { MachineSampler } from "../agent/machine/machine-sampler.ts";
import { readSystemResources } from "../agent/machine/system-resources.ts";
import type { Resources } from "../core/nodes/node.ts";
import type { NodeRegistry } from "../core/nodes/node-registry.ts";
import type { Logger } from "../observability/logger.ts";

export interface OwnNodeResourcesOptions {
  readonly registry: NodeRegistry;
  readonly nodeId: string;
  /** How often the machine is read again: memory limits change, GPUs come and go with drivers. */
  readonly refreshMs: number;
  /** nvidia-smi for GPU discovery: a name on PATH, or a path. */
  readonly nvidiaSmi: string;
  /** Set by the operator: the layers the node may hold, instead of the rule's figure. */
  readonly maxLayers?: number;
  readonly logger: Logger;
  /** The controller node's machine sampler, shared with its metrics and load; default: one of its own. */
  readonly machine?: MachineSampler;
  /** How the machine is read; the agents' reader unless a test gives another. */
  readonly read?: typeof readSystemResources;
}

/**
 * The controller is a node: its machine's CPU cores, memory, disks and GPUs are read exactly as an agent
 * reads its own (the same reader, the same `maxLayers` rule), written to its node record, and read again
 * every `refreshMs`. `usedLayers` belongs to placement and is never written here.
 */
export class OwnNodeResources implements AsyncDisposable {
  readonly #o: OwnNodeResourcesOptions;
  readonly #stop = new AbortController();
  #loop: Promise<void> = Promise.resolve();

  private constructor(options: OwnNodeResourcesOptions) {
    this.#o = options;
  }

  /** Reads the machine once before returning (so the node is never shown empty), then keeps it current. */
  static async start(options: OwnNodeResourcesOptions): Promise<OwnNodeResources> {
    const own = new OwnNodeResources(options);
    await own.#refresh();
    own.#loop = own.#run();
    return own;
  }

  async #run(): Promise<void> {
    const signal = this.#stop.signal;
    while (!signal.aborted) {
      await sleep(this.#o.refreshMs, undefined, { signal, ref: false }).catch(() => undefined);
      if (!signal.aborted) await this.#refresh();
    }
  }

  async #refresh(): Promise<void> {
    const { logger } = this.#o;
    try {
      const read = this.#o.read ?? readSystemResources;
      const measured = await read({
        gpu: { command: this.#o.nvidiaSmi },
        ...(this.#o.machine === undefined ? {} : { machine: this.#o.machine }),
        onWarning: (message) => logger.warn(message),
      });
      const found =
        this.#o.maxLayers === undefined ? measured : { ...measured, maxLayers: this.#o.maxLayers };
      const current = await this.#o.registry.get(this.#o.nodeId);
      if (sameMachine(current.resources, found)) return;
      // A patch replaces resources whole: the layers placement put here are carried over as they are.
      await this.#o.registry.update(this.#o.nodeId, (stored) => ({
        resources: { ...found, usedLayers: stored.resources.usedLayers },
      }));
    } catch (error) {
      if (!this.#stop.signal.aborted) logger.warn({ err: error }, "could not read the controller's machine");
    }
  }

  async close(): Promise<void> {
    this.#stop.abort();
    await this.#loop;
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.close();
  }
}

/** Whether a reading says nothing new: an unchanged machine costs no store write and no event. */
function sameMachine(stored: Resources, found: Resources): boolean {
  return (
    stored.cpuCores === found.cpuCores &&
    stored.memoryMb === found.memoryMb &&
    stored.maxLayers === found.maxLayers &&
    JSON.stringify(stored.gpus) === JSON.stringify(found.gpus) &&
    JSON.stringify(stored.disks) === JSON.stringify(found.disks)
  );
}
