import { Code, ConnectError } from "@connectrpc/connect";
import { type status as GrpcStatus, Metadata, type StatusObject } from "@grpc/grpc-js";
import { CorralError, type ErrorCode, grpcStatusOf } from "../core/errors.ts";

const codeOfGrpcStatus = new Map<number, ErrorCode>(
  Object.entries(grpcStatusOf).map(([code, status]) => [status, code as ErrorCode]),
);

/** Trailer keys carrying CorralError details; `corral-` keeps them apart from other metadata. */
const detailPrefix = "corral-";

export function toGrpcStatus(error: unknown): Partial<StatusObject> & { code: GrpcStatus; details: string } {
  const corral = CorralError.from(error);
  const metadata = new Metadata();
  for (const [key, value] of Object.entries(corral.details)) {
    metadata.set(`${detailPrefix}${key.toLowerCase().replace(/[^a-z0-9_.-]/g, "-")}`, value);
  }
  return { code: grpcStatusOf[corral.code] as GrpcStatus, details: corral.message, metadata };
}

/** Turns a status received from a peer (a forwarded call) back into a CorralError. */
export function fromGrpcStatus(code: number, details: string): CorralError {
  return new CorralError(codeOfGrpcStatus.get(code) ?? "UNKNOWN", details);
}

/** The same mapping for the Connect / gRPC-Web face served to browsers. */
export function toConnectError(error: unknown): ConnectError {
  if (error instanceof ConnectError) return error;
  const corral = CorralError.from(error);
  const connectError = new ConnectError(
    corral.message,
    grpcStatusOf[corral.code] as Code,
    undefined,
    undefined,
    error,
  );
  for (const [key, value] of Object.entries(corral.details))
    connectError.metadata.set(`${detailPrefix}${key}`, value);
  return connectError;
}

export { Code };
