import type { Clock } from "../base/clock.ts";
import type { ControllerView } from "../faces/face-context.ts";

/**
 * The cluster addresses of the live controllers, for heartbeat answers and for replication between
 * controllers: one reader per controller. Neither may cost an etcd read each, so the list is read in
 * the background at most every `everyMs` and the last one read is answered meanwhile (empty until the
 * first read completes; the first call starts it).
 */
export function liveControllerAddresses(
  list: () => Promise<readonly ControllerView[]>,
  everyMs: number,
  clock: Clock,
): () => readonly string[] {
  let addresses: readonly string[] = [];
  let readAt = Number.NEGATIVE_INFINITY;
  let reading = false;
  return () => {
    if (!reading && clock.now() - readAt >= everyMs) {
      reading = true;
      list()
        .then(
          (controllers) => {
            addresses = controllers.map((c) => c.clusterAddress);
          },
          // etcd away: keep answering the last list; the next call after `everyMs` tries again.
          () => undefined,
        )
        .finally(() => {
          reading = false;
          readAt = clock.now();
        });
    }
    return addresses;
  };
}
