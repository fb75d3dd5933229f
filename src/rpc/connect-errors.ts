import { Code, ConnectError } from "@connectrpc/connect";
import { CorralError, type ErrorCode } from "../base/errors.ts";
import { detailsFromMetadata } from "./status.ts";

/**
 * A call's failure as a CorralError with the same code, so it can be passed on or mapped to an exit
 * code; the peer's `corral-*` details come along, decoded, so a forwarded refusal keeps them.
 */
export function fromConnectError(error: unknown): CorralError {
  if (!(error instanceof ConnectError)) return CorralError.from(error);
  const name = Code[error.code]
    .replace(/([a-z])([A-Z])/g, "$1_$2")
    .toUpperCase()
    .replace("CANCELED", "CANCELLED") as ErrorCode;
  const details = detailsFromMetadata(error.metadata.entries());
  return new CorralError(name, error.rawMessage, { cause: error, ...(details ? { details } : {}) });
}
