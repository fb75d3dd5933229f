import { type LevelWithSilent, type Logger, pino } from "pino";

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
  const settings = { level, ...(options.name ? { name: options.name } : {}), base: { pid: process.pid } };
  const tee = options.tee;
  if (tee === undefined) return pino(settings, pino.destination(2));
  // Each stream of a multistream has its own minimum level; "trace" leaves the filtering to the logger.
  const teeStream = {
    write(line: string): void {
      try {
        tee(line);
      } catch {
        // A failing tee must never break logging.
      }
    },
  };
  return pino(
    settings,
    pino.multistream([
      { level: "trace", stream: pino.destination(2) },
      { level: "trace", stream: teeStream },
    ]),
  );
}
