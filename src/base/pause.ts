import { setTimeout as sleep } from "node:timers/promises";

/** Waits `ms`, or less if `signal` aborts first; never rejects. What a pure core is handed to wait with. */
export type Pause = (ms: number, signal: AbortSignal) => Promise<void>;

export const pause: Pause = (ms, signal) =>
  sleep(ms, undefined, { signal }).then(
    () => undefined,
    () => undefined,
  );
