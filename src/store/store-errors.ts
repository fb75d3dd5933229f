import { CorralError, ErrorCode } from "../base/errors.ts";

/** Errors with the same code, message and details from every Store implementation. */
export const storeErrors = {
  compacted(requested: number, oldest: number): CorralError {
    return new CorralError(
      ErrorCode.OutOfRange,
      `history before revision ${requested} was compacted; the oldest revision still available is ${oldest}`,
      { details: { oldestRevision: String(oldest), requestedRevision: String(requested) } },
    );
  },

  watcherLagged(maxLag: number, resumeRevision: number): CorralError {
    return new CorralError(
      ErrorCode.ResourceExhausted,
      `watcher fell more than ${maxLag} events behind and was dropped; resume from revision ${resumeRevision}`,
      { details: { resumeRevision: String(resumeRevision) } },
    );
  },

  closed(): CorralError {
    return new CorralError(ErrorCode.Unavailable, "the store is closed");
  },
};
