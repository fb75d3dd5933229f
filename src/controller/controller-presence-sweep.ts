import type { NodeRegistry } from "../core/nodes/node-registry.ts";
import type { Logger } from "../observability/logger.ts";
import type { ControllerInfo } from "./controller-registry.ts";

export interface ControllerPresenceSweepOptions {
  /** Live controllers (their presence leases). */
  readonly controllers: () => Promise<ControllerInfo[]>;
  /** Where node statuses are read. */
  readonly registry: NodeRegistry;
  /** Where the leader writes them (fenced). */
  readonly leaderRegistry: NodeRegistry;
  readonly isLeader: () => boolean;
  readonly everyMs: number;
  readonly logger: Logger;
}

/**
 * Controllers are nodes of their cluster too, but they do not heartbeat: their liveness is their
 * presence lease. The leader marks a controller's node `down` once it has been missing from the live
 * controllers at two checks in a row (a lease being granted again after an etcd hiccup is not a death),
 * and `ready` again when it is back.
 */
export class ControllerPresenceSweep {
  readonly #o: ControllerPresenceSweepOptions;
  readonly #timer: NodeJS.Timeout;
  readonly #missing = new Set<string>();
  #running = false;

  constructor(options: ControllerPresenceSweepOptions) {
    this.#o = options;
    this.#timer = setInterval(() => void this.#check(), options.everyMs);
    this.#timer.unref();
  }

  async #check(): Promise<void> {
    if (this.#running || !this.#o.isLeader()) return;
    this.#running = true;
    try {
      const live = new Set((await this.#o.controllers()).map((c) => c.name));
      const { nodes } = await this.#o.registry.list();
      for (const node of nodes) {
        if (node.role !== "controller" || node.status === "left") continue;
        if (live.has(node.name)) {
          this.#missing.delete(node.id);
          if (node.status !== "ready") await this.#set(node.id, node.name, "ready");
        } else if (!this.#missing.has(node.id)) this.#missing.add(node.id);
        else if (node.status !== "down") await this.#set(node.id, node.name, "down");
      }
    } catch (error) {
      this.#o.logger.debug({ err: (error as Error).message }, "controller presence check failed");
    } finally {
      this.#running = false;
    }
  }

  async #set(id: string, name: string, status: "ready" | "down"): Promise<void> {
    if (!this.#o.isLeader()) return;
    await this.#o.leaderRegistry.setStatus(id, status);
    this.#o.logger.info({ controller: name, status }, `controller node is ${status}`);
  }

  close(): void {
    clearInterval(this.#timer);
  }
}
