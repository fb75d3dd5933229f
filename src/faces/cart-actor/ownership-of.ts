import { CorralError, ErrorCode } from "../../base/errors.ts";
import { OwnershipFollower as Ownership } from "../../engines/ownership-follower.ts";
import { createLogger, type Logger } from "../../observability/logger.ts";
import type { FaceContext } from "../face-context.ts";

const instances = new WeakMap<FaceContext, Ownership>();
let logger: Logger | undefined;

/**
 * The one ownership directory of a controller, shared by the faces that use it (messages.ControlPlane,
 * corral.v1.MembersService) and started on first use: it follows the store's event feed until the store
 * closes with the controller, so it needs no stopping of its own.
 */
export function ownershipOf(context: FaceContext): Ownership {
  let ownership = instances.get(context);
  if (ownership === undefined) {
    ownership = new Ownership({
      store: context.store,
      registry: context.registry,
      feed: context.feed,
      clock: context.clock,
      onError(error, what) {
        // A store that closed under background work means the controller is stopping.
        if (error instanceof CorralError && error.code === ErrorCode.Unavailable) return;
        logger ??= createLogger({ name: "ownership", level: process.env.CORRAL_LOG_LEVEL ?? "warn" });
        logger.warn({ err: error }, `ownership: could not ${what}`);
      },
    });
    instances.set(context, ownership);
  }
  return ownership;
}

/**
 * Starts the directory now, so that its housekeeping (releasing the claims of members that go down,
 * ending a closing drain when the member comes back) runs from the controller's start, not from the
 * first call. A failure is logged; calls then try again.
 */
export function startOwnership(context: FaceContext): void {
  const ownership = ownershipOf(context);
  ownership.start().catch((error: unknown) => {
    logger ??= createLogger({ name: "ownership", level: process.env.CORRAL_LOG_LEVEL ?? "warn" });
    logger.warn({ err: error }, "ownership: could not load the directory");
  });
}

/** The directory, loaded and following the feed. */
export async function readyOwnership(context: FaceContext): Promise<Ownership> {
  const ownership = ownershipOf(context);
  await ownership.start();
  return ownership;
}
