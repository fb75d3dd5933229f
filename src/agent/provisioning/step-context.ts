import type { ProcessRecorder } from "../../host/process-ledger.ts";
import type { RunAs } from "../../host/run-as.ts";

/** What every step executor gets, and what it answers. */
export interface StepContext {
  /** Who `exec` steps run as (the node's `--provision-as`); undefined: the "auto" rule. */
  readonly runAs?: RunAs;
  /** The data dir's ledger of process groups. */
  readonly recorder?: ProcessRecorder;
  /** false: `exec` steps that ask for root are refused (corral up --no-root-steps). */
  readonly rootSteps?: boolean;
  readonly signal: AbortSignal;
  /** Output of the step, as it comes (capped by the runner). */
  output(text: string): void;
  readonly defaultTimeoutMs: number;
  readonly killGraceMs: number;
  /** The `systemctl` program (a path or a name looked up in PATH). */
  readonly systemctl: string;
  /** Exists exactly when systemd is the running init (sd_booted). */
  readonly systemdRunDir: string;
}

export interface StepResult {
  readonly status: "succeeded" | "failed" | "unchanged";
  readonly message: string;
  readonly exitCode?: number;
}

/** Resolves after `ms`, or at once when `signal` aborts; never leaves a timer behind. */
export function sleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal.aborted) {
      resolve();
      return;
    }
    const done = () => {
      clearTimeout(timer);
      signal.removeEventListener("abort", done);
      resolve();
    };
    const timer = setTimeout(done, ms);
    signal.addEventListener("abort", done, { once: true });
  });
}
