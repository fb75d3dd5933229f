import { CorralError } from "../../base/errors.ts";
import { HealthCheckResponse_ServingStatus as ServingStatus } from "../../gen/grpc/health/v1/health_pb.ts";

export { ServingStatus };

/** Called with a service's new status; SERVICE_UNKNOWN when the service is removed. */
export type HealthListener = (status: ServingStatus) => void;

export interface HealthRegistryOptions {
  /** The overall status (service name ""); SERVING unless given. */
  readonly overall?: ServingStatus;
}

/**
 * The serving status of the server ("") and of each named service, as `grpc.health.v1.Health`
 * reports it. A service that was never set is unknown: Check answers NOT_FOUND, Watch
 * SERVICE_UNKNOWN until it is set.
 */
export class HealthRegistry {
  readonly #statuses = new Map<string, ServingStatus>();
  readonly #listeners = new Map<string, Set<HealthListener>>();
  #frozen = false;

  constructor(options: HealthRegistryOptions = {}) {
    const overall = options.overall ?? ServingStatus.SERVING;
    settable(overall);
    this.#statuses.set("", overall);
  }

  /** The status of `service`, or undefined when it is not registered. */
  get(service: string): ServingStatus | undefined {
    return this.#statuses.get(service);
  }

  /**
   * Sets `service`'s status ("" is the whole server) and tells its watchers if it changed. Ignored
   * after `shutdown()` until `resume()`, so that nothing flips a draining server back to SERVING.
   */
  set(service: string, status: ServingStatus): void {
    settable(status);
    if (this.#frozen) return;
    this.#update(service, status);
  }

  /** Forgets `service`: Check answers NOT_FOUND again and its watchers are sent SERVICE_UNKNOWN. */
  remove(service: string): void {
    if (this.#frozen || !this.#statuses.delete(service)) return;
    this.#notify(service, ServingStatus.SERVICE_UNKNOWN);
  }

  /** Sets every registered service, the overall status included, to `status`. */
  setAll(status: ServingStatus): void {
    settable(status);
    if (this.#frozen) return;
    for (const service of [...this.#statuses.keys()]) this.#update(service, status);
  }

  /**
   * For draining: every service NOT_SERVING, and later `set`/`setAll`/`remove` calls ignored until
   * `resume()`.
   */
  shutdown(): void {
    this.setAll(ServingStatus.NOT_SERVING);
    this.#frozen = true;
  }

  /** Accepts updates again after `shutdown()` (the statuses stay as they are until set). */
  resume(): void {
    this.#frozen = false;
  }

  /** Every registered service and its status, the overall status under "". */
  list(): ReadonlyMap<string, ServingStatus> {
    return new Map(this.#statuses);
  }

  /**
   * Calls `listener` on every change of `service`'s status (not with the current one: read it with
   * `get`). Returns the function that unsubscribes.
   */
  subscribe(service: string, listener: HealthListener): () => void {
    let listeners = this.#listeners.get(service);
    if (listeners === undefined) {
      listeners = new Set();
      this.#listeners.set(service, listeners);
    }
    // A wrapper per subscription, so the same function may subscribe twice and unsubscribe each once.
    const entry: HealthListener = (status) => listener(status);
    listeners.add(entry);
    const set = listeners;
    return () => {
      set.delete(entry);
      if (set.size === 0 && this.#listeners.get(service) === set) this.#listeners.delete(service);
    };
  }

  /** How many subscriptions are open, over all services (a leak shows here). */
  get listenerCount(): number {
    let count = 0;
    for (const listeners of this.#listeners.values()) count += listeners.size;
    return count;
  }

  #update(service: string, status: ServingStatus): void {
    if (this.#statuses.get(service) === status) return;
    this.#statuses.set(service, status);
    this.#notify(service, status);
  }

  #notify(service: string, status: ServingStatus): void {
    const listeners = this.#listeners.get(service);
    if (listeners === undefined) return;
    for (const listener of [...listeners]) listener(status);
  }
}

/** SERVICE_UNKNOWN is what Watch says of an unregistered service; it is not a status one can set. */
function settable(status: ServingStatus): void {
  if (status === ServingStatus.SERVICE_UNKNOWN || ServingStatus[status] === undefined) {
    throw CorralError.invalidArgument("status", `${status} is not a status a service can be set to`);
  }
}
