import { randomUUID } from "node:crypto";
import { pathToFileURL } from "node:url";
import { Worker } from "node:worker_threads";
import { parseDuration } from "../base/duration.ts";
import { packagePath } from "../base/package-root.ts";
import { defaults } from "../defaults.ts";
import { RingLogSource } from "../host/logs/ring-log-source.ts";
import type { ProcessRecorder } from "../host/process-ledger.ts";
import { type RunAs, resolveRunAs } from "../host/run-as.ts";
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
  /** Pin the run (its worker's process and every process block) to this CPU where the OS allows. */
  readonly cpuPin?: number;
  /** Why `cpuPin` (when the node chose it), shown first in the pin report's detail. */
  readonly cpuPinReason?: string;
  /**
   * NanoPing's performance_mode (default true): busy-wait pacing of sources and a raised priority
   * for the worker and its process blocks; off, timer pacing and a lowered priority.
   */
  readonly performanceMode?: boolean;
  /**
   * Addresses for the run's udp_sender blocks, asked again before every attempt (the receiving run
   * may have restarted on another port). A rejection fails the attempt.
   */
  readonly resolveTargets?: (signal: AbortSignal) => Promise<Record<string, { host: string; port: number }>>;
  /** How long a worker has to stop on request before it is terminated (default 5 s). */
  readonly stopGraceMs?: number;
  /** The worker's entry point (tests give a misbehaving one). */
  readonly workerUrl?: URL;
  /** Who process blocks run as; by default the "auto" rule (`nobody` when the agent is root). */
  readonly runAs?: RunAs;
  /** Records each process group in the data dir until it is dead, for the next agent to reap. */
  readonly recorder?: ProcessRecorder;
}

/** What happened to a run's cpu_pin. */
export interface CpuPinReport {
  readonly cpu: number;
  readonly applied: boolean;
  readonly detail: string;
}

/** A udp_receiver block's bound address. */
export interface RunEndpoint {
  readonly block: string;
  readonly host: string;
  readonly port: number;
}

const logReaderWaitMs = parseDuration(defaults.pipelines.logReaderWait, "pipelines.logReaderWait");
/**
 * The worker's code. From source (this file is run.ts) the .mjs entry loads runtime-worker.ts through
 * tsx, since worker threads do not inherit loader hooks; in the built package (this code is bundled into
 * dist/) the worker is its own bundle, dist/pipelines-worker.js, which needs no tsx.
 */
const workerUrl = import.meta.url.endsWith(".ts")
  ? new URL("./runtime-worker-entry.mjs", import.meta.url)
  : pathToFileURL(packagePath("dist", "pipelines-worker.js"));

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
  /** The last attempt's exit code, when it has one (a process block's, or 0 for a completed run). */
  exitCode: number | undefined;
  readonly startedAt = Date.now();
  finishedAt: number | undefined;
  cpuPin: CpuPinReport | undefined;
  endpoints: readonly RunEndpoint[] = [];
  stats: BlockStats = {};
  /** Process groups started by the live attempt (killed with it, whatever its worker does). */
  readonly childGroups = new Set<number>();
  readonly #options: RunOptions;
  #worker: Worker | undefined;
  #preparing: AbortController | undefined;
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

  /** The CPU this run is pinned to (asked or chosen), for choosing the next run's. */
  get pinnedCpu(): number | undefined {
    return this.#options.cpuPin;
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
    const resolve = this.#options.resolveTargets;
    if (resolve === undefined || !this.#options.graph.blocks.some((b) => b.settings.type === "udp_sender")) {
      this.#spawnWorker({});
      return;
    }
    // Until the worker exists, the ready timeout covers resolving too.
    const preparing = new AbortController();
    this.#preparing = preparing;
    const timer = setTimeout(() => preparing.abort(), this.#options.instructionsTimeoutMs);
    timer.unref();
    resolve(preparing.signal).then(
      (targets) => {
        clearTimeout(timer);
        this.#preparing = undefined;
        if (this.#stopRequested) this.#ended({ failed: false, reason: "stopped" });
        else this.#spawnWorker(targets);
      },
      (error: unknown) => {
        clearTimeout(timer);
        this.#preparing = undefined;
        const reason = `udp target not resolved: ${(error as Error).message}`;
        this.log("error", reason);
        this.#ended({ failed: !this.#stopRequested, reason: this.#stopRequested ? "stopped" : reason });
      },
    );
  }

  #spawnWorker(udpTargets: Record<string, { host: string; port: number }>): void {
    let runAs: RunAs;
    try {
      runAs = this.#options.runAs ?? resolveRunAs();
    } catch (error) {
      const reason = (error as Error).message;
      this.log("error", reason);
      this.#ended({ failed: !this.#stopRequested, reason: this.#stopRequested ? "stopped" : reason });
      return;
    }
    const recorder = this.#options.recorder;
    const worker = new Worker(this.#options.workerUrl ?? workerUrl, {
      workerData: {
        graph: this.#options.graph,
        udpTargets,
        runAs,
        ...(this.#options.cpuPin === undefined ? {} : { cpuPin: this.#options.cpuPin }),
        ...(this.#options.cpuPinReason === undefined ? {} : { cpuPinReason: this.#options.cpuPinReason }),
        performanceMode: this.#options.performanceMode ?? true,
      },
      stdout: false,
      stderr: false,
    });
    this.#worker = worker;
    // Process groups this attempt started; whatever is left when the worker is gone is killed here.
    const groups = new Set<number>();
    this.endpoints = [];
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
        case "logs":
          for (const entry of message.entries as { level: keyof typeof levelNumber; message: string }[])
            this.log(entry.level, entry.message);
          // Lets the worker send the next batch (its backlog, not this thread's queue, absorbs bursts),
          // once the log's readers have room: past its backlog the worker pauses the process's output,
          // so a reader that keeps reading gets every line however fast the process writes.
          void this.logs
            .room(this.logs.capacity / 2, logReaderWaitMs)
            .then(() => worker.postMessage({ type: "ack" }));
          break;
        case "stats":
          this.stats = message.blocks as BlockStats;
          break;
        case "pin":
          this.cpuPin = {
            cpu: Number(message.cpu),
            applied: message.applied === true,
            detail: String(message.detail),
          };
          this.#options.onChange?.(this);
          break;
        case "endpoint":
          this.endpoints = [
            ...this.endpoints.filter((e) => e.block !== message.block),
            { block: String(message.block), host: String(message.host), port: Number(message.port) },
          ];
          this.#options.onChange?.(this);
          break;
        case "child": {
          const pid = Number(message.pid);
          groups.add(pid);
          this.childGroups.add(pid);
          const startTime = typeof message.startTime === "string" ? message.startTime : undefined;
          recorder?.record(pid, `pipeline ${this.id}`, startTime);
          break;
        }
        case "child-exit":
          // The group may still hold the child's own children: it is killed with the rest at the end.
          break;
        case "exit":
          exited = true;
          outcome = { failed: message.failed === true, reason: String(message.reason) };
          this.exitCode = typeof message.exitCode === "number" ? message.exitCode : undefined;
          break;
      }
    });
    worker.on("error", (error) => {
      outcome = { failed: true, reason: `block error: ${error.message}` };
    });
    worker.on("exit", () => {
      clearTimeout(readyTimer);
      for (const pgid of groups) {
        try {
          process.kill(-pgid, "SIGKILL");
        } catch {
          // the group is gone already
        }
        this.childGroups.delete(pgid);
        recorder?.forget(pgid);
      }
      if (!exited && this.#stopRequested) outcome = { failed: false, reason: "stopped" };
      this.#worker = undefined;
      this.#ended(outcome);
    });
  }

  #ended(outcome: { failed: boolean; reason: string }): void {
    this.exitReason = outcome.reason;
    if (this.#stopRequested) {
      // A run that completed just before the stop arrived keeps its own outcome.
      this.#close(outcome.reason === "completed" ? "succeeded" : "stopped");
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
    this.finishedAt = Date.now();
    this.log(state === "failed" ? "error" : "info", `run ${state}: ${this.exitReason}`);
    this.logs.end();
    this.#options.onChange?.(this);
    this.#finish();
  }

  /** Stops the run (its processes' groups included) and waits for it to be over. */
  async stop(): Promise<void> {
    if (!this.live) return;
    this.#stopRequested = true;
    if (this.#preparing !== undefined) {
      this.#preparing.abort();
      await this.#done;
      return;
    }
    if (this.#timer !== undefined) {
      clearTimeout(this.#timer);
      this.#timer = undefined;
      this.#close("stopped");
      return;
    }
    const worker = this.#worker;
    worker?.postMessage({ type: "stop" });
    const hard = setTimeout(() => {
      this.log("warn", "the run did not stop in time: terminating it");
      void worker?.terminate();
    }, this.#options.stopGraceMs ?? 5_000);
    await this.#done;
    clearTimeout(hard);
  }
}
