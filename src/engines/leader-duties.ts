import type { Logger } from "../observability/logger.ts";

/** Whether this controller leads, and word when that changes (the controller's leader election). */
export interface Leadership {
  isLeader(): boolean;
  onChange(listener: (leading: boolean) => void): () => void;
}

export interface LeaderDutiesOptions {
  readonly leadership: Leadership;
  readonly membership: { resync(): Promise<void> };
  readonly placement: { schedule(): void };
  readonly provisioning: { recoverInterrupted(): Promise<void> };
  readonly clusters: { start(): Promise<void> };
  readonly logger: Logger;
}

/**
 * A controller that comes to lead catches up on the leader work it skipped while it did not: node
 * statuses and placement every time it takes the lead; interrupted provisioning jobs and cluster
 * rollouts once (a controller that led from the start recovered them when it started). Returns the
 * function that stops following.
 */
export function followLeadership(options: LeaderDutiesOptions): () => void {
  const { leadership, membership, placement, provisioning, clusters, logger } = options;
  let recovered = leadership.isLeader();
  return leadership.onChange((leading) => {
    if (!leading) return;
    membership
      .resync()
      .catch((error: unknown) =>
        logger.warn({ err: error }, "could not read node statuses on taking the lead"),
      );
    placement.schedule();
    if (recovered) return;
    recovered = true;
    provisioning
      .recoverInterrupted()
      .catch((error: unknown) => logger.warn({ err: error }, "could not recover provisioning jobs"));
    clusters
      .start()
      .catch((error: unknown) => logger.warn({ err: error }, "could not recover cluster rollouts"));
  });
}

export interface HousekeepingOptions {
  readonly isLeader: () => boolean;
  /** Books pruned of what they need keep no longer (decided join requests, old audit entries). */
  readonly books: readonly { prune(): Promise<unknown> }[];
  readonly everyMs: number;
  readonly logger: Logger;
}

/** The leader prunes the shared books now and then; returns the function that stops it. */
export function startHousekeeping(options: HousekeepingOptions): () => void {
  const timer = setInterval(() => {
    if (!options.isLeader()) return;
    void Promise.all(options.books.map((book) => book.prune())).catch((error: unknown) =>
      options.logger.warn({ err: error }, "housekeeping failed"),
    );
  }, options.everyMs);
  timer.unref();
  return () => clearInterval(timer);
}
