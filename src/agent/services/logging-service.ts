import { create } from "@bufbuild/protobuf";
import { timestampFromMs } from "@bufbuild/protobuf/wkt";
import type { HandlerContext, ServiceImpl } from "@connectrpc/connect";
import { CorralError } from "../../base/errors.ts";
import { defaults } from "../../defaults.ts";
import {
  Level,
  type LoggingService,
  type Message,
  MessageSchema,
  MessagesSchema,
  type Options,
} from "../../gen/logging_pb.ts";
import type { EntryLevel, LogEntry, LogSource } from "../../host/logs/log-source.ts";
import { streamLogBatches } from "../../host/logs/log-stream.ts";
import type { PipelineManager } from "../../pipelines/manager.ts";
import { type LogLine, logBatch, logBatchLines } from "./log-batch.ts";

export interface LocalLoggingDeps {
  /** The node's own log (the agent's, or the controller's on its own node): the logger's ring. */
  readonly appLog: LogSource;
  /** Where the node's pipeline runs (and their logs) are. */
  readonly pipelines: PipelineManager;
  /** A reader slower than this many waiting entries is ended with RESOURCE_EXHAUSTED. */
  readonly maxQueued?: number;
  /** The most history lines one call sends (options.lines above this is cut to it). */
  readonly maxLines?: number;
}

/** corral's levels as NanoPing's: pino's trace has no NanoPing level, so it counts as DEBUG. */
const toLevel: Readonly<Record<EntryLevel, Level>> = {
  trace: Level.DEBUG,
  debug: Level.DEBUG,
  info: Level.INFO,
  warn: Level.WARNING,
  error: Level.ERROR,
  fatal: Level.FATAL,
};

/** What `options.lines` asks for when unset: the same default as PipelinesService/openLogStream. */
const defaultLines = 1000;
/** Bytes per DownloadLogFileChunk: well under gRPC's 4 MiB message limit. */
const chunkBytes = 64 * 1024;

interface Resolved {
  readonly source: LogSource;
  /** Lines below this NanoPing level are left out (a pipeline's default_logging_level). */
  readonly minimum: Level;
}

/**
 * NanoPing's LoggingService on one node: the node's own log (`app_log_*`) and its pipeline runs' logs
 * (`pipeline_run_log_*`, filtered at the pipeline's `default_logging_level` as PipelinesService's
 * openLogStream is). Which node a call is for is decided before this (the controller's relay, the
 * agent's routing by `node_id`). NanoPing networks do not exist in corral: those requests are refused.
 */
export function localLoggingService(deps: LocalLoggingDeps): Partial<ServiceImpl<typeof LoggingService>> {
  const maxQueued = deps.maxQueued ?? defaults.agentDiagnostics.logs.maxQueued;
  const maxLines = deps.maxLines ?? defaults.agentDiagnostics.logs.maxTail;

  const resolve = (
    request:
      | { case: "appLogStreamRequest" | "appLogFileRequest"; value: unknown }
      | {
          case: "pipelineRunLogStreamRequest" | "pipelineRunLogFileRequest";
          value: { pipelineRunId: string };
        }
      | { case: string | undefined; value?: unknown },
  ): Resolved => {
    switch (request.case) {
      case "appLogStreamRequest":
      case "appLogFileRequest":
        return { source: deps.appLog, minimum: Level.STATE };
      case "pipelineRunLogStreamRequest":
      case "pipelineRunLogFileRequest": {
        const runId = (request.value as { pipelineRunId: string }).pipelineRunId.trim();
        if (runId === "")
          throw CorralError.invalidArgument(
            "pipeline_run_id",
            "is empty; give the run id startPipeline returned",
          );
        const { pipeline, run } = deps.pipelines.run(runId);
        return { source: run.logs, minimum: pipeline.defaultLoggingLevel as Level };
      }
      case undefined:
        throw CorralError.invalidArgument(
          "request",
          "is unset; ask for the node's own log (app_log_…) or a pipeline run's (pipeline_run_log_…)",
        );
      default:
        throw new CorralError(
          "UNIMPLEMENTED",
          "corral has no NanoPing networks, so there are no network logs; ask for the node's own log or a pipeline run's",
        );
    }
  };

  return {
    async *openLogStream(request, ctx) {
      const { source, minimum } = resolve(request.request);
      const lines = linesOf(request.options, maxLines);
      const keep = (entry: LogEntry) => toLevel[entry.level] >= minimum;
      // The history, then what arrives, through the same bounded queue as NodeAgent StreamLogs.
      const batches = streamLogBatches(
        source,
        {},
        { tail: lines, follow: true, maxQueued, signal: ctx.signal },
        logBatchLines,
      );
      for await (const batch of batches) {
        const lines = batch.filter(keep).map(toLine);
        if (lines.length > 0) yield logBatch(MessagesSchema, lines);
        if (ctx.signal.aborted) return;
      }
    },

    async *downloadLogFile(request, ctx) {
      const { source, minimum } = resolve(request.request);
      yield* fileChunks(
        (await source.tail(maxLines, {})).filter((entry) => toLevel[entry.level] >= minimum),
        ctx,
      );
    },
  };
}

/** `options.lines`: unset → 1000; negative → 0; more than the node keeps → all it keeps. */
function linesOf(options: Options | undefined, maxLines: number): number {
  const lines = options?.optionalLines.case === "lines" ? options.optionalLines.value : BigInt(defaultLines);
  if (lines <= 0n) return 0;
  return lines > BigInt(maxLines) ? maxLines : Number(lines);
}

/** One log entry as NanoPing's Message; a line's structured fields (pino JSON) go to `data` as JSON. */
export function toMessage(entry: LogEntry): Message {
  const line = toLine(entry);
  return create(MessageSchema, { ...line, timestamp: timestampFromMs(line.timestamp) });
}

function toLine(entry: LogEntry): LogLine {
  return {
    timestamp: entry.timestamp,
    level: toLevel[entry.level],
    message: entry.message,
    data: Object.keys(entry.fields).length === 0 ? "" : JSON.stringify(entry.fields),
  };
}

/** The log as a text file (one line per entry: time, level, message, fields), in 64 KiB chunks. */
async function* fileChunks(entries: readonly LogEntry[], ctx: HandlerContext) {
  let pending: Buffer[] = [];
  let size = 0;
  for (const entry of entries) {
    if (ctx.signal.aborted) return;
    const data = Object.keys(entry.fields).length === 0 ? "" : ` ${JSON.stringify(entry.fields)}`;
    const line = Buffer.from(
      `${new Date(entry.timestamp).toISOString()} ${Level[toLevel[entry.level]]} ${entry.message}${data}\n`,
    );
    pending.push(line);
    size += line.length;
    while (size >= chunkBytes) {
      const all = Buffer.concat(pending);
      yield chunk(all.subarray(0, chunkBytes));
      pending = [all.subarray(chunkBytes)];
      size = all.length - chunkBytes;
    }
  }
  if (size > 0) yield chunk(Buffer.concat(pending));
}

function chunk(content: Uint8Array) {
  return { response: { case: "fileChunk" as const, value: { content: new Uint8Array(content) } } };
}
