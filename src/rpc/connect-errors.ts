import { Code, ConnectError } from "@connectrpc/connect";
import { CorralError, type ErrorCode } from "../core/errors.ts";

/** A call's failure as a CorralError with the same code, so it can be passed on or mapped to an exit code. */
export function fromConnectError(error: unknown): CorralError {
  if (!(error instanceof ConnectError)) return CorralError.from(error);
  const name = Code[error.code]
    .replace(/([a-z])([A-Z])/g, "$1_$2")
    .toUpperCase()
    .replace("CANCELED", "CANCELLED") as ErrorCode;
  return new CorralError(name, error.rawMessage, { cause: error });
}
