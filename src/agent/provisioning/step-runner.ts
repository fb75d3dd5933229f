import { parseDuration } from "../../base/duration.ts";
import type { StepEvent, StepSpec } from "../../core/provisioning/provisioning-step.ts";
import { defaults } from "../../defaults.ts";
import type { ProcessRecorder } from "../../host/process-ledger.ts";
import type { RunAs } from "../../host/run-as.ts";
import { runExecStep } from "./exec-step.ts";
import { runFileStep } from "./file-step.ts";
import type { StepContext, StepResult } from "./step-context.ts";
import { runSystemdStep } from "./systemd-step.ts";
import { runWaitForStep } from "./wait-for-step.ts";

export type { StepEvent };

export interface StepRunnerOptions {
  readonly signal: AbortSignal;
  /** Output bytes passed on per step; the rest is counted and dropped. */
  readonly maxOutputBytes?: number;
  readonly defaultTimeoutMs?: number;
  readonly killGraceMs?: number;
  /** Tests point these at a fake systemctl and a directory of their own. */
  readonly systemctl?: string;
  readonly systemdRunDir?: string;
  /** Who `exec` steps run as; undefined: the "auto" rule (`nobody` when the agent is root). */
  readonly runAs?: RunAs;
  readonly recorder?: ProcessRecorder;
  /** false: `exec` steps that ask for root (`root: true` in the plan) fail without running. */
  readonly rootSteps?: boolean;
}

/** Output events buffered for a slow consumer are bounded by the per-step output cap plus a few. */
class EventQueue {
  readonly #items: StepEvent[] = [];
  #wake: (() => void) | undefined;
  #closed = false;

  push(event: StepEvent): void {
    this.#items.push(event);
    this.#wake?.();
  }

  close(): void {
    this.#closed = true;
    this.#wake?.();
  }

  async *drain(): AsyncGenerator<StepEvent> {
    for (;;) {
      const next = this.#items.shift();
      if (next !== undefined) {
        yield next;
        continue;
      }
      if (this.#closed) return;
      await new Promise<void>((resolve) => {
        this.#wake = resolve;
      });
      this.#wake = undefined;
    }
  }
}

/**
 * Runs steps in order on this node. Each step reports `running`, its output, then its end; the first
 * failure ends the run and the remaining steps are reported `skipped`. When the signal aborts, or the
 * consumer stops reading, the running step's process group is killed before the generator returns.
 */
export async function* runSteps(
  steps: readonly StepSpec[],
  options: StepRunnerOptions,
): AsyncGenerator<StepEvent> {
  const abort = new AbortController();
  const onAbort = () => abort.abort();
  options.signal.addEventListener("abort", onAbort, { once: true });
  if (options.signal.aborted) abort.abort();
  const maxOutputBytes = options.maxOutputBytes ?? defaults.provisioning.maxOutputBytes;
  let pending: Promise<unknown> | undefined;
  try {
    for (const [index, step] of steps.entries()) {
      if (abort.signal.aborted) {
        yield* skipRest(steps, index, "not run: the run was cancelled");
        return;
      }
      yield { index, status: "running", at: Date.now() };
      const queue = new EventQueue();
      let sent = 0;
      let truncated = false;
      const ctx: StepContext = {
        signal: abort.signal,
        output(text) {
          if (text === "") return;
          const bytes = Buffer.byteLength(text);
          if (sent + bytes <= maxOutputBytes) {
            sent += bytes;
            queue.push({ index, status: "running", output: text, at: Date.now() });
          } else {
            const room = maxOutputBytes - sent;
            if (room > 0) {
              const cut = Buffer.from(text)
                .subarray(0, room)
                .toString()
                .replace(/\uFFFD$/, "");
              sent = maxOutputBytes;
              queue.push({ index, status: "running", output: cut, outputTruncated: true, at: Date.now() });
            }
            truncated = true;
          }
        },
        defaultTimeoutMs: options.defaultTimeoutMs ?? parseDuration(defaults.provisioning.stepTimeout),
        killGraceMs: options.killGraceMs ?? parseDuration(defaults.provisioning.killGrace),
        systemctl: options.systemctl ?? "systemctl",
        systemdRunDir: options.systemdRunDir ?? "/run/systemd/system",
        ...(options.runAs === undefined ? {} : { runAs: options.runAs }),
        ...(options.recorder === undefined ? {} : { recorder: options.recorder }),
        ...(options.rootSteps === undefined ? {} : { rootSteps: options.rootSteps }),
      };
      const running = execute(step, ctx).then(
        (result) => result,
        (error: unknown): StepResult => ({ status: "failed", message: (error as Error).message }),
      );
      pending = running;
      void running.finally(() => queue.close());
      yield* queue.drain();
      const result = await running;
      pending = undefined;
      const cancelled =
        abort.signal.aborted && result.status !== "succeeded" && result.status !== "unchanged";
      yield {
        index,
        status: result.status,
        message:
          cancelled && !/^cancel/.test(result.message) ? `cancelled: ${result.message}` : result.message,
        ...(result.exitCode === undefined ? {} : { exitCode: result.exitCode }),
        ...(truncated ? { outputTruncated: true } : {}),
        at: Date.now(),
      };
      if (result.status === "failed") {
        yield* skipRest(
          steps,
          index + 1,
          abort.signal.aborted ? "not run: the run was cancelled" : `not run: step ${index + 1} failed`,
        );
        return;
      }
    }
  } finally {
    // The consumer went away (or the run ended): stop whatever still runs and wait for it to die.
    abort.abort();
    options.signal.removeEventListener("abort", onAbort);
    await pending;
  }
}

function* skipRest(steps: readonly StepSpec[], from: number, message: string): Generator<StepEvent> {
  for (let index = from; index < steps.length; index++)
    yield { index, status: "skipped", message, at: Date.now() };
}

function execute(step: StepSpec, ctx: StepContext): Promise<StepResult> {
  switch (step.kind) {
    case "exec":
      return runExecStep(step.exec, ctx);
    case "file":
      return runFileStep(step.file, ctx);
    case "systemd":
      return runSystemdStep(step.systemd, ctx);
    case "waitFor":
      return runWaitForStep(step.waitFor, ctx);
  }
}
