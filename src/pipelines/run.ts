import { randomUUID } from "node:crypto";
import { Worker } from "node:worker_threads";
import { RingLogSource } from "../agent/node-agent/logs/ring-log-source.ts";
import type { PipelineGraph } from "./config.ts";

export type RunState = "starting" | "running" | "restarting" | "succeeded" | "failed" | "stopped";

export interface RestartPolicy {
  readonly kind: "never" | "always" | "on_failure";
  readonly maxRestarts: number;
}

export type BlockStats = Readonly<Record<string, Readonly<Record<string, number | string>>>>;

export interface RunOptions {
  readonly graph: PipelineGraph;
  readonly restart: RestartPolicy;
  readonly instructionsTimeoutMs: number;
  readonly backoffMs?: number;
  readonly logLines?: number;
  readonly onChange?: (run: PipelineRun) => void;
}

const workerUrl = new URL("./runtime-worker-entry.mjs", import.meta.url);

/** Numeric order of log levels, NanoPing's Level enum (STATE 0 … FATAL 5). */
export const levelNumber = { debug: 1, info: 2, warn: 3, error: 4 } as const;

/**
 * A supervised run: one worker thread at a time, restarted by the restart policy with backoff.
 * Logs go to a bounded ring (served to openLogStream and NodeAgent StreamLogs as `pipeline:<id>`);
 * the latest per-block counters are kept for telemetry.
 */
export class PipelineRun {
  readonly id = `run-${randomUUID()}`;
  readonly logs: RingLogSource;
  state: RunState = "starting";
  restarts = 0;
  exitReason = "";
  stats: BlockStats = {};
  readonly #options: RunOptions;
  #worker: Worker | undefined;
  #stopRequested = false;
  #timer: NodeJS.Timeout | undefined;
  #done: Promise<void>;
  #finish: () => void = () => {};

  constructor(options: RunOptions) {
    this.#options = options;
    this.logs = new RingLogSource(options.logLines ?? 10_000);
    this.#done = new Promise((resolve) => {
      this.#finish = resolve;
    });
    this.#spawn();
  }

  get live(): boolean {
    return this.state === "starting" || this.state === "running" || this.state === "restarting";
  }

  /** Resolves once the run is over (stopped, succeeded or failed for good). */
  get done(): Promise<void> {
    return this.#done;
  }

  log(level: keyof typeof levelNumber, message: string): void {
    this.logs.append({
      timestamp: Date.now(),
      level,
      message,
      source: `pipeline:${this.id}`,
      fields: {},
    });
  }

  #spawn(): void {
    const worker = new Worker(workerUrl, {
      workerData: { graph: this.#options.graph },
      stdout: false,
      stderr: false,
    });
    this.#worker = worker;
    let ready = false;
    let exited = false;
    const readyTimer = setTimeout(() => {
      if (!ready) {
        this.log("error", `not ready within ${this.#options.instructionsTimeoutMs} ms`);
        void worker.terminate();
      }
    }, this.#options.instructionsTimeoutMs);
    readyTimer.unref();
    let outcome: { failed: boolean; reason: string } = { failed: true, reason: "worker ended" };
    worker.on("message", (message: Record<string, unknown>) => {
      switch (message.type) {
        case "ready":
          ready = true;
          clearTimeout(readyTimer);
          this.state = "running";
          this.#options.onChange?.(this);
          break;
        case "log":
          this.log(message.level as keyof typeof levelNumber, String(message.message));
          break;
        case "stats":
          this.stats = message.blocks as BlockStats;
          break;
        case "exit":
          exited = true;
          outcome = { failed: message.failed === true, reason: String(message.reason) };
          break;
      }
    });
    worker.on("error", (error) => {
      outcome = { failed: true, reason: `block error: ${error.message}` };
    });
    worker.on("exit", () => {
      clearTimeout(readyTimer);
      if (!exited && this.#stopRequested) outcome = { failed: false, reason: "stopped" };
      this.#worker = undefined;
      this.#ended(outcome);
    });
  }

  #ended(outcome: { failed: boolean; reason: string }): void {
    this.exitReason = outcome.reason;
    if (this.#stopRequested) {
      this.#close("stopped");
      return;
    }
    const { kind, maxRestarts } = this.#options.restart;
    const wanted = kind === "always" || (kind === "on_failure" && outcome.failed);
    if (wanted && this.restarts < maxRestarts) {
      this.restarts++;
      this.state = "restarting";
      this.log("warn", `run ended (${outcome.reason}); restart ${this.restarts} of ${maxRestarts}`);
      this.#options.onChange?.(this);
      const backoff = Math.min(5_000, (this.#options.backoffMs ?? 100) * 2 ** (this.restarts - 1));
      this.#timer = setTimeout(() => {
        this.#timer = undefined;
        if (this.#stopRequested) this.#close("stopped");
        else this.#spawn();
      }, backoff);
      return;
    }
    this.#close(outcome.failed ? "failed" : "succeeded");
  }

  #close(state: RunState): void {
    this.state = state;
    this.log(state === "failed" ? "error" : "info", `run ${state}: ${this.exitReason}`);
    this.logs.end();
    this.#options.onChange?.(this);
    this.#finish();
  }

  /** Stops the run (its processes' groups included) and waits for it to be over. */
  async stop(): Promise<void> {
    if (!this.live) return;
    this.#stopRequested = true;
    if (this.#timer !== undefined) {
      clearTimeout(this.#timer);
      this.#timer = undefined;
      this.#close("stopped");
      return;
    }
    const worker = this.#worker;
    worker?.postMessage({ type: "stop" });
    const hard = setTimeout(() => void worker?.terminate(), 5_000);
    await this.#done;
    clearTimeout(hard);
  }
}
