import { X509Certificate } from "node:crypto";
import { readFile, stat } from "node:fs/promises";
import { join, resolve } from "node:path";
import type { DescService } from "@bufbuild/protobuf";
import {
  type Client,
  Code,
  ConnectError,
  createClient,
  type Interceptor,
  type Transport,
} from "@connectrpc/connect";
import { compressionGzip, createGrpcTransport } from "@connectrpc/connect-node";
import { formatHostPort, parseHostPort } from "../base/address.ts";
import { CorralError } from "../base/errors.ts";
import { defaults } from "../defaults.ts";
import { fromConnectError as corralErrorOf } from "../rpc/connect-errors.ts";
import { FailoverTransport, parseAddressList } from "../rpc/failover-transport.ts";

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

/** The global options that say where the controller is and who the caller is. */
export interface ConnectionOptions {
  /** host:port; the bridge by default, the cluster listener when a credential or a CA is given. */
  readonly server?: string | undefined;
  /** A directory with client.crt, client.key and ca.crt: mutual TLS to the cluster listener. */
  readonly credentials?: string | undefined;
  /** An operator access token, sent as `authorization: Bearer`; needs TLS (a CA to check the server). */
  readonly token?: string | undefined;
  /** The controller's CA certificate (PEM), to check the cluster listener. */
  readonly ca?: string | undefined;
  readonly timeoutMs?: number;
}

/** Where calls go and how; `client()` makes typed clients that share one HTTP/2 connection. */
export interface Connection {
  /** The host:port dialed. */
  readonly server: string;
  readonly tls: boolean;
  /** Who the controller will see: for messages. */
  readonly identity: string;
  client<S extends DescService>(service: S): Client<S>;
  /** Awaits a call, turning a failure into a CorralError (so the exit code follows the status). */
  call<T>(promise: Promise<T>): Promise<T>;
}

/** The cluster listener on this machine, where `--credentials` and `--token` go without `--server`. */
export const defaultClusterServer = `127.0.0.1:${parseHostPort(defaults.controller.clusterAddress, "http.address").port}`;

const tokenFormat = /^corral1\.([0-9a-f]{64})\.([0-9a-z]{12})\.([A-Za-z0-9_-]{43})$/;

/**
 * Picks the transport from the global options:
 *
 * - nothing: plaintext HTTP/2 to the loopback bridge (`--server`, default 127.0.0.1:8080), where the
 *   caller acts as admin;
 * - `--credentials <dir>`: mutual TLS to the cluster listener (default 127.0.0.1:7443) with the client
 *   certificate in the directory;
 * - `--token <token>`: TLS to the cluster listener, the token as `authorization: Bearer`; the CA comes
 *   from `--ca` or from the credentials directory (whose certificate is then not presented, so that the
 *   token's role is the one that applies);
 * - `--ca <file>` alone: TLS without an identity (only the open doors answer).
 *
 * Files that are missing or are not PEM are usage errors (exit 2) that name the file.
 */
export async function openConnection(options: ConnectionOptions): Promise<Connection> {
  const token = options.token?.trim() || undefined;
  const credentialsDir = options.credentials?.trim() ? resolve(options.credentials) : undefined;
  const tls = credentialsDir !== undefined || token !== undefined || options.ca !== undefined;
  const server = options.server ?? (tls ? defaultClusterServer : defaults.controller.bridgeAddress);
  // Several controllers (HA): `--server a,b,c`; calls move to the next one when one cannot be reached.
  const servers = parseAddressList(server, "--server").map(formatHostPort);
  // 0 means no deadline (streams that follow until Ctrl-C).
  const timeoutMs = options.timeoutMs ?? 10_000;
  const deadline = timeoutMs > 0 ? { defaultTimeoutMs: timeoutMs } : {};

  if (!tls) {
    const transport = failover(servers, (address) =>
      createGrpcTransport({
        baseUrl: `http://${address}`,
        acceptCompression: [compressionGzip],
        ...deadline,
      }),
    );
    return connection(servers.join(","), false, "admin (the loopback bridge trusts its callers)", transport);
  }

  if (credentialsDir !== undefined) {
    const info = await stat(credentialsDir).catch(() => undefined);
    if (info === undefined || !info.isDirectory()) {
      throw CorralError.invalidArgument(
        "--credentials",
        `${credentialsDir} is not a directory (it should hold client.crt, client.key and ca.crt)`,
      );
    }
  }
  let caPem: string;
  if (options.ca !== undefined) caPem = await readPem(resolve(options.ca), "--ca", "CERTIFICATE");
  else if (credentialsDir !== undefined)
    caPem = await readPem(join(credentialsDir, "ca.crt"), "--credentials", "CERTIFICATE");
  else {
    throw CorralError.invalidArgument(
      "--token",
      "needs the controller's CA to check the server: give --ca <file> (the controller's ca.crt) or --credentials <dir>",
    );
  }

  let identity = "no identity (only the open doors will answer)";
  let cert: string | undefined;
  let key: string | undefined;
  const interceptors: Interceptor[] = [];
  if (token !== undefined) {
    const parsed = tokenFormat.exec(token);
    if (parsed?.[1] === undefined || parsed[2] === undefined) {
      throw CorralError.invalidArgument("--token", "is not a corral token (corral1.<ca>.<id>.<secret>)");
    }
    const caFingerprint = fingerprintOf(caPem, options.ca ?? join(credentialsDir ?? "", "ca.crt"));
    if (caFingerprint !== `sha256:${parsed[1]}`) {
      throw CorralError.invalidArgument(
        "--token",
        `belongs to the cluster whose CA is sha256:${parsed[1]}, but ${options.ca ?? join(credentialsDir ?? "", "ca.crt")} is ${caFingerprint}`,
      );
    }
    const header = `Bearer ${token}`;
    interceptors.push((next) => (request) => {
      request.header.set("authorization", header);
      return next(request);
    });
    identity = `operator token ${parsed[2]}`;
  } else if (credentialsDir !== undefined) {
    cert = await readPem(join(credentialsDir, "client.crt"), "--credentials", "CERTIFICATE");
    key = await readPem(join(credentialsDir, "client.key"), "--credentials", "PRIVATE KEY");
    identity = `the client certificate in ${credentialsDir}`;
  }

  const transport = failover(servers, (address) =>
    createGrpcTransport({
      baseUrl: `https://${address}`,
      acceptCompression: [compressionGzip],
      ...deadline,
      interceptors,
      nodeOptions: {
        ca: caPem,
        ...(cert === undefined ? {} : { cert }),
        ...(key === undefined ? {} : { key }),
      },
    }),
  );
  return connection(servers.join(","), true, identity, transport);
}

function failover(servers: readonly string[], transportTo: (address: string) => Transport): Transport {
  const [only] = servers;
  if (servers.length === 1 && only !== undefined) return transportTo(only);
  return new FailoverTransport({
    targets: servers.map((address) => ({ address, transport: transportTo(address) })),
  });
}

function connection(server: string, tls: boolean, identity: string, transport: Transport): Connection {
  return {
    server,
    tls,
    identity,
    client: (service) => createClient(service, transport),
    call: (promise) =>
      promise.catch((error: unknown) => {
        throw fromConnectError(error, server, tls);
      }),
  };
}

async function readPem(path: string, flag: string, kind: "CERTIFICATE" | "PRIVATE KEY"): Promise<string> {
  let text: string;
  try {
    text = await readFile(path, "utf8");
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    throw CorralError.invalidArgument(
      flag,
      code === "ENOENT" ? `${path} does not exist` : `cannot read ${path}: ${(error as Error).message}`,
    );
  }
  const marker =
    kind === "CERTIFICATE" ? /-----BEGIN CERTIFICATE-----/ : /-----BEGIN [A-Z ]*PRIVATE KEY-----/;
  if (!marker.test(text)) {
    throw CorralError.invalidArgument(flag, `${path} is not a PEM ${kind.toLowerCase()}`);
  }
  return text;
}

function fingerprintOf(pem: string, path: string): string {
  try {
    return `sha256:${new X509Certificate(pem).fingerprint256.replaceAll(":", "").toLowerCase()}`;
  } catch (error) {
    throw CorralError.invalidArgument("--ca", `${path} is not a certificate: ${(error as Error).message}`);
  }
}

const tlsTrustCodes = new Set([
  "UNABLE_TO_VERIFY_LEAF_SIGNATURE",
  "UNABLE_TO_GET_ISSUER_CERT",
  "UNABLE_TO_GET_ISSUER_CERT_LOCALLY",
  "SELF_SIGNED_CERT_IN_CHAIN",
  "DEPTH_ZERO_SELF_SIGNED_CERT",
  "CERT_SIGNATURE_FAILURE",
  "CERT_HAS_EXPIRED",
  "CERT_NOT_YET_VALID",
  "ERR_TLS_CERT_ALTNAME_INVALID",
]);

/**
 * Turns a ConnectError into a CorralError with the same code, so exit codes follow the status.
 * `tls` says how the call was made, to explain the failures of talking TLS to the plaintext bridge or
 * plaintext to the TLS cluster listener.
 */
export function fromConnectError(error: unknown, server: string, tls?: boolean): CorralError {
  if (!(error instanceof ConnectError)) return CorralError.from(error);
  const cause = error.cause as { code?: unknown; message?: unknown } | undefined;
  const causeCode = typeof cause?.code === "string" ? cause.code : "";
  if (tlsTrustCodes.has(causeCode)) {
    return new CorralError(
      "UNAUTHENTICATED",
      `the controller at ${server} presented a certificate the given CA does not vouch for ` +
        `(${String(cause?.message)}); is --ca (or ca.crt in --credentials) this cluster's CA?`,
    );
  }
  if (causeCode === "ERR_SSL_WRONG_VERSION_NUMBER" || /wrong version number/.test(error.rawMessage)) {
    return new CorralError(
      "FAILED_PRECONDITION",
      `${server} does not speak TLS: is it the loopback bridge? Call the bridge without --credentials, ` +
        "--token or --ca, or point --server at the cluster listener",
    );
  }
  if (/^Session closed with error code/.test(error.rawMessage)) {
    // The controller closed the HTTP/2 connection under the call: it is shutting down or restarting.
    return new CorralError(
      "UNAVAILABLE",
      `the controller at ${server} closed the connection (${error.rawMessage})`,
    );
  }
  if (error.code === Code.Unavailable) {
    return new CorralError("UNAVAILABLE", `cannot reach the controller at ${server}: ${error.rawMessage}`);
  }
  const name = corralErrorOf(error).code;
  // Plaintext HTTP/2 to a TLS port ends either as a cancelled stream or as a reset connection,
  // depending on which side notices first.
  if (
    tls === false &&
    ((error.code === Code.Canceled && /stream closed with error code CANCEL/.test(error.rawMessage)) ||
      (error.code === Code.Aborted && /ECONNRESET/.test(error.rawMessage)))
  ) {
    return new CorralError(
      name,
      `${error.rawMessage} — if ${server} is the cluster listener, it speaks TLS: give --credentials <dir>, ` +
        "or --token with --ca <file>",
    );
  }
  return new CorralError(name, error.rawMessage);
}
