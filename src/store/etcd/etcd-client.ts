import { Etcd3, type IOptions } from "etcd3";
import { CorralError } from "../../base/errors.ts";

type Policy = NonNullable<NonNullable<IOptions["faultHandling"]>["global"]>;

/**
 * A fault-handling policy that runs the call once. etcd3's default global policy retries every call
 * that failed with a recoverable error up to three times — a txn whose reply was lost would then be
 * applied twice (or fail its own compare and look like a conflict) — and its default per-host circuit
 * breaker refuses every call for 5 s after three failures, which slows recovery after an etcd restart.
 * Callers retry what is safe to retry themselves.
 */
const once: Policy = {
  execute: async (fn: (context: { signal: AbortSignal }) => unknown, signal?: AbortSignal) =>
    fn({ signal: signal ?? new AbortController().signal }),
  onSuccess: () => ({ dispose: () => undefined }),
  onFailure: () => ({ dispose: () => undefined }),
} as unknown as Policy;

/** etcd's client TLS, in PEM: the CA that signed etcd's certificate, and an optional client certificate. */
export interface EtcdTls {
  readonly ca: Buffer;
  readonly cert?: Buffer;
  readonly key?: Buffer;
}

export interface EtcdClientOptions {
  readonly endpoints: readonly string[];
  /** Deadline of each unary call; streams have none. */
  readonly requestTimeoutMs?: number;
  /** With it every endpoint is reached over TLS trusting only `ca` (endpoints should be https://). */
  readonly tls?: EtcdTls;
}

/** An etcd3 client that sends each call once, with a deadline on unary calls. */
export function createEtcdClient(options: EtcdClientOptions): Etcd3 {
  const timeout = options.requestTimeoutMs ?? 10_000;
  return new Etcd3({
    hosts: [...options.endpoints],
    ...etcdCredentials(options.tls),
    defaultCallOptions: (context) => (context.isStream ? {} : { deadline: Date.now() + timeout }),
    faultHandling: { global: once, host: () => once },
  });
}

/** etcd3's `credentials` option for `tls` (nothing without it: plaintext, or system roots for https://). */
export function etcdCredentials(tls: EtcdTls | undefined): Pick<IOptions, "credentials"> {
  if (tls === undefined) return {};
  if ((tls.cert === undefined) !== (tls.key === undefined))
    throw CorralError.invalidArgument("tls", "needs both cert and key (a client certificate), or neither");
  return {
    credentials: {
      rootCertificate: tls.ca,
      ...(tls.cert === undefined ? {} : { certChain: tls.cert }),
      ...(tls.key === undefined ? {} : { privateKey: tls.key }),
    },
  };
}

/** Failures where the request cannot have reached etcd: any call may be sent again. */
export function neverSent(error: unknown): boolean {
  const message = error instanceof Error ? error.message : String(error);
  return /ECONNREFUSED|No connection established|ECONNRESET before|Failed to connect|connect ETIMEDOUT/i.test(
    message,
  );
}
