import type { Clock } from "../../core/clock.ts";
import type { ClusterFacts, ControllerView } from "../face-context.ts";

/** One reader per controller, however many listeners mount the agent service. */
const readers = new WeakMap<ClusterFacts, () => readonly string[]>();

/** `advertisedControllers` for these facts, shared by every mount of the service. */
export function advertisedControllersOf(
  facts: ClusterFacts,
  everyMs: number,
  clock: Clock,
): () => readonly string[] {
  let reader = readers.get(facts);
  if (reader === undefined) {
    reader = advertisedControllers(facts.controllers, everyMs, clock);
    readers.set(facts, reader);
  }
  return reader;
}

/**
 * The cluster addresses of the live controllers, for heartbeat answers. A heartbeat must not cost an
 * etcd read, so the list is read in the background at most every `everyMs` and the last one read is
 * answered meanwhile (empty until the first read, and with one controller).
 */
export function advertisedControllers(
  list: (() => Promise<ControllerView[]>) | undefined,
  everyMs: number,
  clock: Clock,
): () => readonly string[] {
  let addresses: readonly string[] = [];
  let readAt = Number.NEGATIVE_INFINITY;
  let reading = false;
  return () => {
    if (list !== undefined && !reading && clock.now() - readAt >= everyMs) {
      reading = true;
      list()
        .then(
          (controllers) => {
            addresses = controllers.map((c) => c.clusterAddress);
          },
          // etcd away: keep answering the last list; the next heartbeat after `everyMs` tries again.
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
