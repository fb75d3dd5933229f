import type { DescService } from "@bufbuild/protobuf";
import { type Client, Code, ConnectError, createClient } from "@connectrpc/connect";
import { compressionGzip, createGrpcTransport } from "@connectrpc/connect-node";
import { parseHostPort } from "../core/address.ts";
import { CorralError, type ErrorCode } from "../core/errors.ts";
import { defaults } from "../defaults.ts";

export interface ClientOptions {
  /** host:port of the controller's loopback bridge. */
  readonly server?: string;
  readonly timeoutMs?: number;
}

/** A typed client of the controller for the CLI and TUI, over the plaintext loopback bridge. */
export function controllerClient<S extends DescService>(service: S, options: ClientOptions = {}): Client<S> {
  const server = options.server ?? process.env.CORRAL_SERVER ?? defaults.controller.bridgeAddress;
  parseHostPort(server, "--server");
  const transport = createGrpcTransport({
    baseUrl: `http://${server}`,
    acceptCompression: [compressionGzip],
    defaultTimeoutMs: options.timeoutMs ?? 10_000,
  });
  return createClient(service, transport);
}

/** Turns a ConnectError into a CorralError with the same code, so exit codes follow the status. */
export function fromConnectError(error: unknown, server: string): CorralError {
  if (!(error instanceof ConnectError)) return CorralError.from(error);
  if (error.code === Code.Unavailable) {
    return new CorralError("UNAVAILABLE", `cannot reach the controller at ${server}: ${error.rawMessage}`);
  }
  const name = Code[error.code]
    .replace(/([a-z])([A-Z])/g, "$1_$2")
    .toUpperCase()
    .replace("CANCELED", "CANCELLED") as ErrorCode;
  return new CorralError(name, error.rawMessage);
}
