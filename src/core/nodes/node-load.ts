/**
 * The latest load figures each node sent with its heartbeat (CPU in percent, memory in use in MiB), kept
 * in memory on the controller: heartbeats are not store writes, and a load figure is stale in seconds
 * anyway. Bounded by the number of nodes; a removed node is forgotten.
 */
export interface NodeLoad {
  /** Busy share of all CPUs since the node's previous reading, 0–100. */
  readonly cpuUsage: number;
  readonly memoryUsedMb: number;
  /** When the controller received it (ms since the epoch, the core's clock). */
  readonly at: number;
}

export class NodeLoads {
  readonly #latest = new Map<string, NodeLoad>();

  record(nodeId: string, load: NodeLoad): void {
    const cpuUsage = Number.isFinite(load.cpuUsage) ? Math.min(100, Math.max(0, load.cpuUsage)) : 0;
    const memoryUsedMb = Number.isFinite(load.memoryUsedMb) ? Math.max(0, load.memoryUsedMb) : 0;
    this.#latest.set(nodeId, { cpuUsage, memoryUsedMb, at: load.at });
  }

  latest(nodeId: string): NodeLoad | undefined {
    return this.#latest.get(nodeId);
  }

  forget(nodeId: string): void {
    this.#latest.delete(nodeId);
  }

  get size(): number {
    return this.#latest.size;
  }
}
