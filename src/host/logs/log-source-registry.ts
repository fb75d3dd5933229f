import { CorralError } from "../../base/errors.ts";
import { type FileLogOptions, FileLogSources } from "./file-log-source.ts";
import { detectJournal, JournalLogSource } from "./journal-log-source.ts";
import type { LogSource } from "./log-source.ts";

/** A LogFilter's `source`, parsed. */
export type SourceSpec =
  | { readonly kind: "agent" }
  | { readonly kind: "journal" }
  | { readonly kind: "file"; readonly path: string }
  | { readonly kind: "pipeline"; readonly runId: string };

const runIdPattern = /^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$/;

/** Parses `agent` (also the empty string), `journal`, `file:<path>`, `pipeline:<run id>`. */
export function parseSourceSpec(source: string): SourceSpec {
  if (source === "" || source === "agent") return { kind: "agent" };
  if (source === "journal") return { kind: "journal" };
  if (source.startsWith("file:")) {
    const path = source.slice("file:".length);
    if (path === "")
      throw CorralError.invalidArgument("source", `"file:" needs a path, e.g. file:/var/log/syslog`);
    return { kind: "file", path };
  }
  if (source.startsWith("pipeline:")) {
    const runId = source.slice("pipeline:".length);
    if (!runIdPattern.test(runId))
      throw CorralError.invalidArgument("source", `"${runId.slice(0, 64)}" is not a pipeline run id`);
    return { kind: "pipeline", runId };
  }
  throw CorralError.invalidArgument(
    "source",
    `"${source.slice(0, 64)}" is not a log source; use agent, journal, file:<path> or pipeline:<run id>`,
  );
}

export interface LogSourceRegistryOptions {
  /** The agent's own log (an AgentLogRing fed by the logger's tee). */
  readonly agent: LogSource;
  /** The allowed files, or the options to build them with (the defaults when absent). */
  readonly files?: FileLogSources | FileLogOptions;
  /**
   * The journal: a source, `null` for none, or "detect" (the default): journalctl in the safe PATH and
   * a journal present, checked once on first use.
   */
  readonly journal?: LogSource | null | "detect";
}

/**
 * Every source StreamLogs can read, by the name a LogFilter gives. The pipeline runtime registers each
 * run's output here (`registerPipeline`) and removes it when the run's logs are no longer kept.
 */
export class LogSourceRegistry {
  readonly #agent: LogSource;
  readonly #files: FileLogSources;
  readonly #journalOption: LogSource | null | "detect";
  #journal: Promise<LogSource | null> | undefined;
  readonly #pipelines = new Map<string, LogSource>();

  constructor(options: LogSourceRegistryOptions) {
    this.#agent = options.agent;
    this.#files = options.files instanceof FileLogSources ? options.files : new FileLogSources(options.files);
    this.#journalOption = options.journal ?? "detect";
  }

  get files(): FileLogSources {
    return this.#files;
  }

  /** Makes `pipeline:<runId>` readable; the returned function removes it. */
  registerPipeline(runId: string, source: LogSource): () => void {
    if (!runIdPattern.test(runId)) throw CorralError.invalidArgument("runId", `"${runId}" is not a run id`);
    if (this.#pipelines.has(runId))
      throw new CorralError("ALREADY_EXISTS", `pipeline run "${runId}" already has a log source`);
    this.#pipelines.set(runId, source);
    return () => {
      if (this.#pipelines.get(runId) === source) this.#pipelines.delete(runId);
    };
  }

  /**
   * The source a LogFilter names. INVALID_ARGUMENT for a malformed name, PERMISSION_DENIED for a file
   * outside the allow-list, NOT_FOUND for a missing file or unknown run, FAILED_PRECONDITION when the
   * node has no journal.
   */
  async resolve(source: string): Promise<LogSource> {
    const spec = parseSourceSpec(source);
    switch (spec.kind) {
      case "agent":
        return this.#agent;
      case "file":
        return this.#files.open(spec.path);
      case "pipeline": {
        const found = this.#pipelines.get(spec.runId);
        if (found === undefined) throw CorralError.notFound("pipeline run", spec.runId);
        return found;
      }
      case "journal": {
        const journal = await this.#journalSource();
        if (journal === null)
          throw new CorralError("FAILED_PRECONDITION", "no systemd journal on this node", {
            details: { field: "source" },
          });
        return journal;
      }
    }
  }

  #journalSource(): Promise<LogSource | null> {
    if (this.#journal === undefined) {
      const option = this.#journalOption;
      this.#journal =
        option === "detect"
          ? detectJournal().then((journalctl) =>
              journalctl === undefined ? null : new JournalLogSource({ journalctl }),
            )
          : Promise.resolve(option);
    }
    return this.#journal;
  }
}
