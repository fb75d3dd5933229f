import { shownValue } from "./safe-text.ts";

/**
 * The one error type of corral. Every layer throws it; the RPC layer maps `code` to a gRPC status.
 * The set of codes is closed on purpose: a handler cannot invent a status a client does not expect.
 */
export const ErrorCode = {
  Canceled: "CANCELLED",
  Unknown: "UNKNOWN",
  InvalidArgument: "INVALID_ARGUMENT",
  DeadlineExceeded: "DEADLINE_EXCEEDED",
  NotFound: "NOT_FOUND",
  AlreadyExists: "ALREADY_EXISTS",
  PermissionDenied: "PERMISSION_DENIED",
  ResourceExhausted: "RESOURCE_EXHAUSTED",
  FailedPrecondition: "FAILED_PRECONDITION",
  Aborted: "ABORTED",
  OutOfRange: "OUT_OF_RANGE",
  Unimplemented: "UNIMPLEMENTED",
  Internal: "INTERNAL",
  Unavailable: "UNAVAILABLE",
  Unauthenticated: "UNAUTHENTICATED",
} as const;
export type ErrorCode = (typeof ErrorCode)[keyof typeof ErrorCode];

/** gRPC numeric status for each code (google.rpc.Code). */
export const grpcStatusOf: Readonly<Record<ErrorCode, number>> = {
  CANCELLED: 1,
  UNKNOWN: 2,
  INVALID_ARGUMENT: 3,
  DEADLINE_EXCEEDED: 4,
  NOT_FOUND: 5,
  ALREADY_EXISTS: 6,
  PERMISSION_DENIED: 7,
  RESOURCE_EXHAUSTED: 8,
  FAILED_PRECONDITION: 9,
  ABORTED: 10,
  OUT_OF_RANGE: 11,
  UNIMPLEMENTED: 12,
  INTERNAL: 13,
  UNAVAILABLE: 14,
  UNAUTHENTICATED: 16,
};

export class CorralError extends Error {
  override readonly name = "CorralError";
  readonly code: ErrorCode;
  /** Extra facts a client can act on (which field, which limit); sent as response metadata. */
  readonly details: Readonly<Record<string, string>>;

  constructor(
    code: ErrorCode,
    message: string,
    options?: { cause?: unknown; details?: Record<string, string> },
  ) {
    super(message, options?.cause === undefined ? undefined : { cause: options.cause });
    this.code = code;
    this.details = options?.details ?? {};
  }

  static invalidArgument(field: string, problem: string): CorralError {
    return new CorralError(ErrorCode.InvalidArgument, `${field}: ${problem}`, { details: { field } });
  }

  /** The id is quoted shortened and escaped: it is whatever the caller asked for, 100 000 characters or "x\ny". */
  static notFound(what: string, id: string): CorralError {
    return new CorralError(ErrorCode.NotFound, `${what} "${shownValue(id)}" not found`, {
      details: { [what]: id },
    });
  }

  /** Wraps anything thrown into a CorralError; unknown errors become INTERNAL and keep their cause. */
  static from(error: unknown): CorralError {
    if (error instanceof CorralError) return error;
    if (isAbortError(error))
      return new CorralError(ErrorCode.Canceled, "the call was cancelled", { cause: error });
    return new CorralError(ErrorCode.Internal, describe(error), { cause: error });
  }
}

/** What was thrown, in words; a value whose `toString` throws (or that has none) is still described. */
function describe(error: unknown): string {
  try {
    return error instanceof Error ? String(error.message) : String(error);
  } catch {
    return "a value that cannot be described was thrown";
  }
}

function isAbortError(error: unknown): boolean {
  return error instanceof Error && (error.name === "AbortError" || error.name === "TimeoutError");
}
