import { Code } from "@connectrpc/connect";
import { codeOf, isFinal } from "./errors.ts";

export type LinkState = "connecting" | "live" | "retrying" | "failed";

export interface FollowHandlers<T> {
  /** A new connection is opening: what the previous one built may be replaced. */
  readonly onConnect?: () => void | Promise<void>;
  readonly onItem: (item: T) => void;
  readonly onState?: (state: LinkState, error?: unknown) => void;
}

/**
 * Keeps a server stream open for as long as `signal` lives: when it ends or fails (a controller
 * restart), it opens it again after a growing pause (250 ms doubling to 5 s). No polling: the server
 * pushes every change; a reconnect starts from a fresh snapshot.
 */
export function follow<T>(
  open: (signal: AbortSignal) => AsyncIterable<T>,
  handlers: FollowHandlers<T>,
  signal: AbortSignal,
): void {
  const run = async () => {
    let pauseMs = 250;
    while (!signal.aborted) {
      handlers.onState?.("connecting");
      try {
        await handlers.onConnect?.();
        let first = true;
        for await (const item of open(signal)) {
          if (first) {
            first = false;
            pauseMs = 250;
            handlers.onState?.("live");
          }
          handlers.onItem(item);
        }
        if (signal.aborted) return;
        handlers.onState?.("retrying");
      } catch (error) {
        if (signal.aborted) return;
        if (isFinal(error)) {
          handlers.onState?.("failed", error);
          return;
        }
        // A relayed watch ends at the controller's default deadline: open it again soon, quietly.
        if (codeOf(error) === Code.DeadlineExceeded) pauseMs = 250;
        else handlers.onState?.("retrying", error);
      }
      await pause(pauseMs, signal);
      pauseMs = Math.min(pauseMs * 2, 5_000);
    }
  };
  void run();
}

function pause(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    const done = () => {
      clearTimeout(timer);
      signal.removeEventListener("abort", done);
      resolve();
    };
    const timer = setTimeout(done, ms);
    signal.addEventListener("abort", done, { once: true });
  });
}
