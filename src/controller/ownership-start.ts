import type { Clock } from "../base/clock.ts";
import { CorralError, ErrorCode } from "../base/errors.ts";
import type { EventFeed } from "../core/events/event-feed.ts";
import type { NodeRegistry } from "../core/nodes/node-registry.ts";
import { OwnershipFollower as Ownership } from "../engines/ownership-follower.ts";
import type { Logger } from "../observability/logger.ts";
import type { Store } from "../store/store.ts";

/**
 * The controller's one ownership directory (go-cart-actor's ControlPlane and corral.v1.MembersService
 * share it), started now so that its housekeeping (releasing the claims of members that go down,
 * ending a closing drain when the member comes back) runs from the controller's start, not from the
 * first call. A failed start is logged; calls then try again. The caller closes it.
 */
export function startOwnership(parts: {
  readonly store: Store;
  readonly registry: NodeRegistry;
  readonly feed: EventFeed;
  readonly clock: Clock;
  readonly logger: Logger;
}): Ownership {
  const { logger } = parts;
  const ownership = new Ownership({
    store: parts.store,
    registry: parts.registry,
    feed: parts.feed,
    clock: parts.clock,
    onError(error, what) {
      // A store that closed under background work means the controller is stopping.
      if (error instanceof CorralError && error.code === ErrorCode.Unavailable) return;
      logger.warn({ err: error }, `ownership: could not ${what}`);
    },
  });
  ownership
    .start()
    .catch((error: unknown) => logger.warn({ err: error }, "ownership: could not load the directory"));
  return ownership;
}
