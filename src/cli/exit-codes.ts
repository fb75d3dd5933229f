import { CorralError } from "../base/errors.ts";

/** Exit codes scripts can rely on. */
export const exitCode = {
  ok: 0,
  /** The command ran and failed (a call was refused, a node was not found …). */
  failed: 1,
  /** The command line or a config file is wrong: nothing was done. */
  usage: 2,
  /** The controller could not be reached. */
  unavailable: 3,
  /** Stopped by a signal. */
  interrupted: 130,
} as const;

export function exitCodeFor(error: unknown): number {
  if (error instanceof CorralError) {
    if (error.code === "INVALID_ARGUMENT") return exitCode.usage;
    if (error.code === "UNAVAILABLE") return exitCode.unavailable;
  }
  return exitCode.failed;
}
