import type { MessageInitShape } from "@bufbuild/protobuf";
import type { HandlerContext, ServiceImpl } from "@connectrpc/connect";
import { CorralError } from "../../../base/errors.ts";
import { defaults } from "../../../defaults.ts";
import type { LogEntrySchema, LogFilter, NodeAgent } from "../../../gen/picontroller_pb.ts";
import {
  type FilterLevel,
  filterLevels,
  type LogEntry,
  type LogQuery,
  type LogSource,
} from "../../../host/logs/log-source.ts";
import type { LogSourceRegistry } from "../../../host/logs/log-source-registry.ts";
import { LogStreamState, streamLogEntries } from "../../../host/logs/log-stream.ts";
import { principalOf } from "../../../rpc/principal-context.ts";
import { describePrincipal } from "../../../security/principal.ts";
import type { CommandExecutor } from "./exec/command-executor.ts";

export interface ExecAndLogsDeps {
  readonly executor: Pick<CommandExecutor, "execute">;
  readonly logs: Pick<LogSourceRegistry, "resolve">;
  /** Entries a slow reader may leave waiting before its stream ends with RESOURCE_EXHAUSTED. */
  readonly maxQueued?: number;
  /** The most a LogFilter's `tail` may ask for. */
  readonly maxTail?: number;
  /** Told about every StreamLogs call as it starts (metrics, tests). */
  readonly onLogStream?: (state: LogStreamState, source: string) => void;
}

const maxCommandLength = 64;
const maxArgs = 64;
const maxContainsLength = 1024;
const maxSourceLength = 4096 + "file:".length;

/** NodeAgent's ExecuteCommand and StreamLogs. */
export function execAndLogsService(
  deps: ExecAndLogsDeps,
): Pick<ServiceImpl<typeof NodeAgent>, "executeCommand" | "streamLogs"> {
  const maxQueued = deps.maxQueued ?? defaults.agentDiagnostics.logs.maxQueued;
  const maxTail = deps.maxTail ?? defaults.agentDiagnostics.logs.maxTail;
  return {
    async executeCommand(request, ctx) {
      if (request.command === "")
        throw CorralError.invalidArgument("command", "is empty; name an allowed command");
      if (request.command.length > maxCommandLength)
        throw CorralError.invalidArgument("command", `is longer than ${maxCommandLength} characters`);
      if (request.args.length > maxArgs)
        throw CorralError.invalidArgument("args", `has ${request.args.length} entries; at most ${maxArgs}`);
      if (!Number.isInteger(request.timeoutSeconds) || request.timeoutSeconds < 0)
        throw CorralError.invalidArgument(
          "timeout_seconds",
          `must be 0 (the command's default) or a positive number of seconds, got ${request.timeoutSeconds}`,
        );
      const result = await deps.executor.execute({
        command: request.command,
        args: request.args,
        timeoutMs: request.timeoutSeconds * 1000,
        signal: ctx.signal,
        caller: callerOf(ctx),
      });
      return {
        exitCode: result.exitCode,
        stdout: result.stdout,
        stderr: result.stderr,
        truncated: result.truncated,
        timedOut: result.timedOut,
        durationMs: BigInt(result.durationMs),
        auditId: result.auditId,
      };
    },

    async *streamLogs(filter, ctx) {
      const query = validateFilter(filter, maxTail);
      const source: LogSource = await deps.logs.resolve(filter.source);
      const sourceName = filter.source === "" ? "agent" : filter.source;
      const state = new LogStreamState(maxQueued);
      deps.onLogStream?.(state, sourceName);
      const entries = streamLogEntries(source, query, {
        tail: filter.tail,
        follow: filter.follow,
        maxQueued,
        signal: ctx.signal,
        state,
      });
      for await (const entry of entries) yield toProto(entry, sourceName);
    },
  };
}

function validateFilter(filter: LogFilter, maxTail: number): LogQuery {
  if (filter.source.length > maxSourceLength) throw CorralError.invalidArgument("source", "is too long");
  if (filter.level !== "" && !(filterLevels as readonly string[]).includes(filter.level))
    throw CorralError.invalidArgument(
      "level",
      `"${filter.level.slice(0, 32)}" is not one of ${filterLevels.join(", ")}`,
    );
  if (filter.contains.length > maxContainsLength)
    throw CorralError.invalidArgument("contains", `is longer than ${maxContainsLength} characters`);
  if (filter.since < 0n)
    throw CorralError.invalidArgument("since", "must be 0 or milliseconds since the Unix epoch");
  if (filter.since > BigInt(Number.MAX_SAFE_INTEGER))
    throw CorralError.invalidArgument("since", "is out of range");
  if (!Number.isInteger(filter.tail) || filter.tail < 0 || filter.tail > maxTail)
    throw CorralError.invalidArgument("tail", `must be between 0 and ${maxTail}, got ${filter.tail}`);
  return {
    ...(filter.level !== "" ? { minLevel: filter.level as FilterLevel } : {}),
    ...(filter.contains !== "" ? { contains: filter.contains } : {}),
    ...(filter.since > 0n ? { since: Number(filter.since) } : {}),
  };
}

function toProto(entry: LogEntry, source: string): MessageInitShape<typeof LogEntrySchema> {
  return {
    timestamp: BigInt(Math.trunc(entry.timestamp)),
    level: entry.level,
    message: entry.message,
    source: entry.source || source,
    fields: { ...entry.fields },
  };
}

function callerOf(ctx: HandlerContext): string {
  try {
    return describePrincipal(principalOf(ctx));
  } catch {
    return "unknown";
  }
}
