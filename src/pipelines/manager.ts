import { randomUUID } from "node:crypto";
import { mkdir, readFile, rename, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { CorralError } from "../base/errors.ts";
import type { ProcessRecorder } from "../host/process-ledger.ts";
import { type RunAs, resolveRunAs } from "../host/run-as.ts";
import { type PipelineGraph, parsePipelineConfig } from "./config.ts";
import { chooseCpu } from "./cpu-choice.ts";
import { checkProcessBlocks, type ProcessPolicy } from "./process-policy.ts";
import { PipelineRun, type RestartPolicy } from "./run.ts";

/** A pipeline as the node stores it (NanoPing's settings, corral's names). */
export interface PipelineRecord {
  readonly id: string;
  readonly name: string;
  readonly jsonConfig: string;
  readonly compatible: boolean;
  readonly restartPolicy: RestartPolicy;
  readonly startup: "manual" | "auto";
  /** NanoPing's logging.Level number (STATE 0 … FATAL 5). */
  readonly defaultLoggingLevel: number;
  readonly nodeReferenceId?: string;
  /** Seconds. */
  readonly instructionsTimeout: number;
  readonly cpuPin?: number;
  readonly performanceMode: boolean;
  /** Desired state: started by the user (or auto) and not stopped since. */
  readonly started: boolean;
}

export type PipelineSettings = Omit<PipelineRecord, "id" | "compatible" | "started">;

export interface PipelineView extends PipelineRecord {
  readonly currentRun?: string;
}

export type PipelineEvent = {
  /** `run`: the pipeline's run changed state (corral's native API only; NanoPing has no such event). */
  readonly type: "create" | "update" | "delete" | "run";
  readonly pipeline: PipelineView;
};

export interface PipelineManagerOptions {
  readonly dataDir: string;
  /** Makes a run's log readable elsewhere (NodeAgent StreamLogs `pipeline:<run>`); returns the undo. */
  readonly registerLogs?: (run: PipelineRun) => () => void;
  readonly backoffMs?: number;
  /**
   * Where a udp_sender's `{node, pipeline, block}` target listens (asked of the controller). Without
   * it, only `{host, port}` targets can be used.
   */
  readonly resolveUdpTarget?: (
    target: UdpBlockRef,
    signal: AbortSignal,
  ) => Promise<{ host: string; port: number }>;
  /** How long a run has to stop on request before it is terminated. */
  readonly stopGraceMs?: number;
  /**
   * The programs `process` blocks may run on this node, checked when a pipeline is created or
   * changed and again before every run (a config stored before the rule, or a list made shorter
   * since, must not run). Agents and controllers always pass one; without it nothing is checked.
   */
  readonly processPolicy?: ProcessPolicy;
  /** Who process blocks run as (the node's `--run-as`); by default the "auto" rule, never root when root. */
  readonly runAs?: RunAs;
  /** The data dir's ledger of process groups (reaped by the next agent after a crash). */
  readonly recorder?: ProcessRecorder;
}

export interface UdpBlockRef {
  readonly node: string;
  readonly pipeline: string;
  readonly block: string;
}

export const defaultInstructionsTimeout = 30;

/**
 * The pipelines of one node: the desired set persisted in the data dir, the runs, and the feed of
 * create/update/delete events that `streamPipelines` serves.
 */
export class PipelineManager {
  readonly #file: string;
  readonly #options: PipelineManagerOptions;
  readonly #pipelines = new Map<string, PipelineRecord>();
  /** Current run by pipeline id, and every run kept by run id (finished ones too, for lookups). */
  readonly #current = new Map<string, PipelineRun>();
  readonly #runs = new Map<string, { pipelineId: string; run: PipelineRun; unregister: () => void }>();
  readonly #listeners = new Set<(event: PipelineEvent) => void>();
  #queue: Promise<unknown> = Promise.resolve();
  #closed = false;

  private constructor(options: PipelineManagerOptions) {
    this.#options = options;
    this.#file = join(options.dataDir, "pipelines.json");
  }

  static async open(options: PipelineManagerOptions): Promise<PipelineManager> {
    const manager = new PipelineManager(options);
    await mkdir(options.dataDir, { recursive: true, mode: 0o700 });
    try {
      const saved = JSON.parse(await readFile(manager.#file, "utf8")) as PipelineRecord[];
      for (const record of saved) manager.#pipelines.set(record.id, record);
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== "ENOENT") throw error;
    }
    for (const record of manager.#pipelines.values()) {
      if (record.compatible && (record.startup === "auto" || record.started)) {
        try {
          manager.#startRun(record);
        } catch {
          // left stopped; visible through started/current_run
        }
      }
    }
    return manager;
  }

  /** One mutation at a time, each persisted before it is answered. */
  #serial<T>(task: () => Promise<T>): Promise<T> {
    const next = this.#queue.then(task, task);
    this.#queue = next.catch(() => undefined);
    return next;
  }

  async #save(): Promise<void> {
    const temp = `${this.#file}.${process.pid}.tmp`;
    await writeFile(temp, JSON.stringify([...this.#pipelines.values()], null, 1), { mode: 0o600 });
    await rename(temp, this.#file);
  }

  view(record: PipelineRecord): PipelineView {
    const run = this.#current.get(record.id);
    return {
      ...record,
      started: run?.live === true,
      ...(run?.live ? { currentRun: run.id } : {}),
    };
  }

  list(): PipelineView[] {
    return [...this.#pipelines.values()].map((record) => this.view(record));
  }

  get(id: string): PipelineView {
    const record = this.#pipelines.get(id);
    if (record === undefined) throw CorralError.notFound("pipeline", id);
    return this.view(record);
  }

  getByName(name: string): PipelineView {
    for (const record of this.#pipelines.values()) if (record.name === name) return this.view(record);
    throw CorralError.notFound("pipeline", name);
  }

  /** The pipeline's current run, or its last one while it is kept; undefined when it never ran. */
  latestRun(pipelineId: string): PipelineRun | undefined {
    return this.#current.get(pipelineId);
  }

  run(runId: string): { pipeline: PipelineView; run: PipelineRun } {
    const entry = this.#runs.get(runId);
    const record = entry === undefined ? undefined : this.#pipelines.get(entry.pipelineId);
    if (entry === undefined || record === undefined) throw CorralError.notFound("run", runId);
    return { pipeline: this.view(record), run: entry.run };
  }

  subscribe(listener: (event: PipelineEvent) => void): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  #emit(type: PipelineEvent["type"], pipeline: PipelineView): void {
    for (const listener of this.#listeners) listener({ type, pipeline });
  }

  #check(settings: PipelineSettings, exceptId?: string): boolean {
    if (settings.name.trim() === "") throw CorralError.invalidArgument("name", "must not be empty");
    for (const other of this.#pipelines.values()) {
      if (other.name === settings.name && other.id !== exceptId)
        throw new CorralError(
          "ALREADY_EXISTS",
          `a pipeline named "${settings.name}" already exists on this node`,
        );
    }
    if (settings.instructionsTimeout < 0)
      throw CorralError.invalidArgument("instructions_timeout", "must not be negative");
    if (settings.restartPolicy.maxRestarts < 0)
      throw CorralError.invalidArgument("restart_policy.max_restarts", "must not be negative");
    const parsed = parsePipelineConfig(settings.jsonConfig);
    if (parsed.compatible && this.#options.processPolicy !== undefined)
      checkProcessBlocks(parsed.graph, this.#options.processPolicy);
    return parsed.compatible;
  }

  create(settings: PipelineSettings): Promise<PipelineView> {
    return this.#serial(async () => {
      const compatible = this.#check(settings);
      const record: PipelineRecord = { ...settings, id: randomUUID(), compatible, started: false };
      this.#pipelines.set(record.id, record);
      await this.#save();
      this.#emit("create", this.view(record));
      if (record.startup === "auto" && compatible) await this.#startLocked(record.id);
      return this.view(this.#pipelines.get(record.id) ?? record);
    });
  }

  update(id: string, settings: PipelineSettings, forceRestart: boolean): Promise<PipelineView> {
    return this.#serial(async () => {
      const current = this.#pipelines.get(id);
      if (current === undefined) throw CorralError.notFound("pipeline", id);
      const compatible = this.#check(settings, id);
      const record: PipelineRecord = { ...settings, id, compatible, started: current.started };
      this.#pipelines.set(id, record);
      await this.#save();
      if (forceRestart && this.#current.get(id)?.live) {
        await this.#current.get(id)?.stop();
        if (compatible) this.#startRun(record);
      }
      const view = this.view(record);
      this.#emit("update", view);
      return view;
    });
  }

  delete(id: string): Promise<void> {
    return this.#serial(async () => {
      const record = this.#pipelines.get(id);
      if (record === undefined) throw CorralError.notFound("pipeline", id);
      const view = this.view(record);
      await this.#current.get(id)?.stop();
      this.#current.delete(id);
      this.#pipelines.delete(id);
      await this.#save();
      this.#emit("delete", { ...view, started: false });
    });
  }

  start(id: string): Promise<string> {
    return this.#serial(() => this.#startLocked(id));
  }

  async #startLocked(id: string): Promise<string> {
    const record = this.#pipelines.get(id);
    if (record === undefined) throw CorralError.notFound("pipeline", id);
    if (!record.compatible)
      throw new CorralError(
        "FAILED_PRECONDITION",
        `pipeline "${record.name}" has a config newer than corral supports`,
      );
    const existing = this.#current.get(id);
    if (existing?.live) return existing.id;
    const run = this.#startRun(record);
    const started = { ...record, started: true };
    this.#pipelines.set(id, started);
    await this.#save();
    return run.id;
  }

  #startRun(record: PipelineRecord): PipelineRun {
    if (this.#closed) throw new CorralError("UNAVAILABLE", "the pipeline manager is closed");
    const parsed = parsePipelineConfig(record.jsonConfig);
    if (!parsed.compatible) throw new CorralError("FAILED_PRECONDITION", "incompatible config");
    if (this.#options.processPolicy !== undefined)
      checkProcessBlocks(parsed.graph, this.#options.processPolicy);
    // Resolved before anything starts: a node without its run-as user refuses the start, changing nothing.
    const runAs = this.#options.runAs ?? resolveRunAs();
    const pin = this.#cpuFor(record);
    const run = new PipelineRun({
      runAs,
      ...(this.#options.recorder === undefined ? {} : { recorder: this.#options.recorder }),
      graph: parsed.graph,
      restart: record.restartPolicy,
      instructionsTimeoutMs: (record.instructionsTimeout || defaultInstructionsTimeout) * 1000,
      ...(this.#options.backoffMs === undefined ? {} : { backoffMs: this.#options.backoffMs }),
      ...pin,
      performanceMode: record.performanceMode,
      ...(this.#options.stopGraceMs === undefined ? {} : { stopGraceMs: this.#options.stopGraceMs }),
      resolveTargets: (signal) => this.#resolveTargets(parsed.graph, signal),
      onChange: (changed) => this.#runChanged(record.id, changed),
    });
    const unregister = this.#options.registerLogs?.(run) ?? (() => {});
    this.#current.set(record.id, run);
    this.#runs.set(run.id, { pipelineId: record.id, run, unregister });
    // Keep finished runs findable for a while, bounded.
    if (this.#runs.size > 256) {
      for (const [runId, entry] of this.#runs) {
        if (!entry.run.live) {
          entry.unregister();
          this.#runs.delete(runId);
          break;
        }
      }
    }
    return run;
  }

  /** The pipeline's cpu_pin, or (unset: NanoPing's "chosen automatically") the least loaded CPU. */
  #cpuFor(record: PipelineRecord): { cpuPin?: number; cpuPinReason?: string } {
    if (record.cpuPin !== undefined) return { cpuPin: record.cpuPin };
    const pinned = new Map<number, number>();
    for (const run of this.#current.values()) {
      const cpu = run.pinnedCpu;
      if (run.live && cpu !== undefined) pinned.set(cpu, (pinned.get(cpu) ?? 0) + 1);
    }
    try {
      const choice = chooseCpu(pinned);
      return { cpuPin: choice.cpu, cpuPinReason: choice.reason };
    } catch {
      // No /proc (not Linux): the run goes unpinned, as it would anywhere the OS cannot pin.
      return {};
    }
  }

  /** Each udp_sender's address; a target not listening yet is asked again until `signal` aborts. */
  async #resolveTargets(
    graph: PipelineGraph,
    signal: AbortSignal,
  ): Promise<Record<string, { host: string; port: number }>> {
    const targets: Record<string, { host: string; port: number }> = {};
    for (const block of graph.blocks) {
      if (block.settings.type !== "udp_sender") continue;
      const target = block.settings.target;
      if ("host" in target) {
        targets[block.name] = { host: target.host, port: target.port };
        continue;
      }
      const resolve = this.#options.resolveUdpTarget;
      if (resolve === undefined)
        throw new CorralError(
          "FAILED_PRECONDITION",
          "this node cannot resolve {node, pipeline, block} targets",
        );
      let last: unknown;
      for (let attempt = 0; ; attempt++) {
        if (signal.aborted)
          throw new CorralError(
            "DEADLINE_EXCEEDED",
            `${block.name}: ${target.node}/${target.pipeline}/${target.block}: ${(last as Error | undefined)?.message ?? "gave up"}`,
          );
        try {
          targets[block.name] = await resolve(target, signal);
          break;
        } catch (error) {
          last = error;
          await new Promise<void>((done) => {
            const timer = setTimeout(finish, Math.min(1_000, 100 * 2 ** attempt));
            function finish() {
              clearTimeout(timer);
              signal.removeEventListener("abort", finish);
              done();
            }
            signal.addEventListener("abort", finish, { once: true });
          });
        }
      }
    }
    return targets;
  }

  #runChanged(pipelineId: string, run: PipelineRun): void {
    const record = this.#pipelines.get(pipelineId);
    if (record === undefined || this.#current.get(pipelineId) !== run) return;
    this.#emit("run", this.view(record));
    // A run that ended by itself (completed, or failed for good) leaves the pipeline stopped, also
    // after the node restarts. Runs stopped on purpose (stop, delete, restart, shutdown) are handled
    // by whoever stopped them.
    if (run.live || run.state === "stopped" || this.#closed) return;
    void this.#serial(async () => {
      const latest = this.#pipelines.get(pipelineId);
      if (latest === undefined || !latest.started || this.#current.get(pipelineId) !== run) return;
      this.#pipelines.set(pipelineId, { ...latest, started: false });
      await this.#save();
    }).catch(() => undefined);
  }

  stop(which: { id?: string; name?: string; runId?: string }): Promise<void> {
    return this.#serial(async () => {
      let id: string;
      if (which.runId !== undefined) id = this.run(which.runId).pipeline.id;
      else if (which.name !== undefined) id = this.getByName(which.name).id;
      else id = this.get(which.id ?? "").id;
      const record = this.#pipelines.get(id);
      await this.#current.get(id)?.stop();
      if (record !== undefined) {
        this.#pipelines.set(id, { ...record, started: false });
        await this.#save();
      }
    });
  }

  /** Stops every run (the desired set stays on disk, so they start again with the node). */
  async close(): Promise<void> {
    this.#closed = true;
    await this.#queue;
    await Promise.all([...this.#current.values()].map((run) => run.stop()));
    for (const entry of this.#runs.values()) entry.unregister();
    this.#runs.clear();
    this.#listeners.clear();
  }
}
