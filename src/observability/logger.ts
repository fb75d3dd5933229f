import { type LevelWithSilent, type Logger, pino } from "pino";
import { logDestination } from "./journal-stream.ts";

export type { Logger };

export const logLevels: readonly LevelWithSilent[] = [
  "trace",
  "debug",
  "info",
  "warn",
  "error",
  "fatal",
  "silent",
];

export interface LoggerOptions {
  level?: string;
  name?: string;
  /**
   * Also hands every line written (one JSON object, newline-terminated) to this function, e.g. the
   * agent's in-memory log ring that StreamLogs reads. It must not block; what it throws is ignored.
   */
  tee?: (line: string) => void;
}

/** Structured JSON logs on stderr, so stdout stays for what a command prints for people and scripts. */
export function createLogger(options: LoggerOptions = {}): Logger {
  const level = (options.level ?? process.env.CORRAL_LOG_LEVEL ?? "info") as LevelWithSilent;
  if (!logLevels.includes(level)) {
    throw new Error(`log level "${level}" is not one of ${logLevels.join(", ")}`);
  }
  const tee = options.tee;
  const settings = { level, ...(options.name ? { name: options.name } : {}), base: { pid: process.pid } };
  if (tee === undefined) return pino(settings, logDestination(2));
  // The tee (the node's own log, served by StreamLogs) keeps info lines even when stderr shows less.
  const rank = (name: string) => pino.levels.values[name] ?? Number.POSITIVE_INFINITY;
  const teeLevel = (rank(level) < rank("info") ? level : "info") as Exclude<LevelWithSilent, "silent">;
  const teeStream = {
    write(line: string): void {
      try {
        tee(line);
      } catch {
        // A failing tee must never break logging.
      }
    },
  };
  const streams: { level: Exclude<LevelWithSilent, "silent">; stream: { write(line: string): void } }[] = [
    { level: teeLevel, stream: teeStream },
  ];
  if (level !== "silent") streams.push({ level, stream: logDestination(2) });
  return pino({ ...settings, level: teeLevel }, pino.multistream(streams));
}
