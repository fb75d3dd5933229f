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

/** Structured JSON logs on stderr, so stdout stays for what a command prints for people and scripts. */
export function createLogger(options: { level?: string; name?: string } = {}): Logger {
  const level = (options.level ?? process.env.CORRAL_LOG_LEVEL ?? "info") as LevelWithSilent;
  if (!logLevels.includes(level)) {
    throw new Error(`log level "${level}" is not one of ${logLevels.join(", ")}`);
  }
  return pino(
    { level, ...(options.name ? { name: options.name } : {}), base: { pid: process.pid } },
    pino.destination(2),
  );
}
