import { readFile } from "node:fs/promises";
import { isAbsolute, join, resolve } from "node:path";
import { createSecureContext, type SecureContextOptions } from "node:tls";
import { z } from "zod";
import { isLoopbackHost, parseHostPort } from "../base/address.ts";
import { addressField, durationField, parseConfigFile, readYamlFile } from "../base/config-file.ts";
import { parseDuration } from "../base/duration.ts";
import { CorralError } from "../base/errors.ts";
import { defaults } from "../defaults.ts";
import { processPolicy } from "../pipelines/process-policy.ts";
import type { EtcdTls } from "../store/etcd/etcd-client.ts";

/**
 * The controller's YAML follows NanoPing's controller file (node.name, http.address,
 * hubServer.authenticationByRequest.timeout, grpcBridge.address) and adds web, dataDir and store.
 */
const address = addressField;
const duration = durationField;

const fileSchema = z
  .object({
    node: z
      .object({
        name: z.string().min(1).max(128).optional(),
        /** How often the controller's own node reads its machine again. */
        resourcesRefresh: duration("node.resourcesRefresh").optional(),
        /** The nvidia-smi that finds the controller machine's GPUs (a name on PATH, or a path). */
        nvidiaSmi: z.string().min(1).max(4096).optional(),
        /** Model layers the controller's node may hold; 0 keeps them off the machine that holds the CA key. */
        maxLayers: z.number().int().min(0).max(256).optional(),
      })
      .strict()
      .optional(),
    http: z
      .object({
        address: address("http.address").optional(),
        /** Where other controllers and agents reach this one (behind NAT, or binding every interface). */
        advertiseAddress: address("http.advertiseAddress").optional(),
      })
      .strict()
      .optional(),
    grpcBridge: z
      .object({ address: address("grpcBridge.address").optional() })
      .strict()
      .optional(),
    web: z
      .object({
        address: address("web.address").optional(),
        /** The package `/corral.tgz` serves for the one-line join (default: `npm pack` of this corral). */
        installPackage: z.string().min(1).optional(),
      })
      .strict()
      .optional(),
    hubServer: z
      .object({
        authenticationByRequest: z
          .object({ timeout: duration("hubServer.authenticationByRequest.timeout").optional() })
          .strict()
          .optional(),
      })
      .strict()
      .optional(),
    liveness: z
      .object({
        minInterval: duration("liveness.minInterval").optional(),
        maxHeartbeatsPerSecond: z.number().positive().optional(),
        suspectAfterMissed: z.number().positive().optional(),
        downAfter: duration("liveness.downAfter").optional(),
        streamLostDownAfter: duration("liveness.streamLostDownAfter").optional(),
        keepaliveTime: duration("liveness.keepaliveTime").optional(),
        keepaliveTimeout: duration("liveness.keepaliveTimeout").optional(),
      })
      .strict()
      .optional(),
    identity: z
      .object({ nodeCertificateLifetime: duration("identity.nodeCertificateLifetime").optional() })
      .strict()
      .optional(),
    dataDir: z.string().min(1).optional(),
    provisioning: z
      .object({
        plansDir: z.string().min(1).optional(),
        concurrency: z.number().int().min(1).max(defaults.provisioning.maxConcurrency).optional(),
      })
      .strict()
      .optional(),
    shutdownGrace: duration("shutdownGrace").optional(),
    pipelines: z
      .object({ processAllow: z.array(z.string()).optional() })
      .strict()
      .optional(),
    /** What one caller may hold at once (defaults in src/defaults.ts: streams, joinRequests). */
    limits: z
      .object({
        streamsPerConnection: z.number().int().min(1).max(100_000).optional(),
        streamsPerPrincipal: z.number().int().min(1).max(100_000).optional(),
        joinRequests: z
          .object({
            maxPending: z.number().int().min(1).max(100_000).optional(),
            perSource: z.number().int().min(1).max(100_000).optional(),
            perNetwork: z.number().int().min(1).max(100_000).optional(),
          })
          .strict()
          .optional(),
      })
      .strict()
      .optional(),
    metrics: z
      .object({
        interval: duration("metrics.interval").optional(),
        historySamples: z.number().int().min(1).max(100_000).optional(),
      })
      .strict()
      .optional(),
    ca: z
      .object({
        /** 32-byte key that seals the CA's private keys in the store; the same file on every controller. */
        keyFile: z.string().min(1).optional(),
        /** How long both CAs are trusted after `corral certs rotate` (unless the call says). */
        rotationOverlap: duration("ca.rotationOverlap").optional(),
      })
      .strict()
      .optional(),
    store: z
      .object({
        sqlite: z
          .object({ path: z.string().min(1).optional() })
          .strict()
          .optional(),
        etcd: z
          .object({
            endpoints: z
              .array(
                z
                  .string()
                  .url()
                  .refine((url) => /^https?:\/\//.test(url), "must be an http:// or https:// URL"),
              )
              .min(1, "must name at least one etcd client URL"),
            prefix: z
              .string()
              .regex(/^\/[^\0]*$/, "must start with /")
              .optional(),
            /** Leader lease TTL; default 10s (etcd counts whole seconds, at least 1). */
            leaseTtl: duration("store.etcd.leaseTtl").optional(),
            /** How often each controller publishes the heartbeats it received; default 1s. */
            lastSeenFlush: duration("store.etcd.lastSeenFlush").optional(),
            /** etcd's client TLS: the CA its certificate chains to, and this controller's client certificate. */
            tls: z
              .object({
                caFile: z.string().min(1),
                certFile: z.string().min(1).optional(),
                keyFile: z.string().min(1).optional(),
              })
              .strict()
              .superRefine((tls, ctx) => {
                if (tls.certFile !== undefined && tls.keyFile === undefined)
                  ctx.addIssue({
                    code: "custom",
                    path: ["keyFile"],
                    message: "is required with certFile (the client certificate's private key)",
                  });
                if (tls.keyFile !== undefined && tls.certFile === undefined)
                  ctx.addIssue({
                    code: "custom",
                    path: ["certFile"],
                    message: "is required with keyFile (the client certificate the key belongs to)",
                  });
              })
              .optional(),
          })
          .strict()
          .superRefine((etcd, ctx) => {
            // etcd3 speaks TLS to every endpoint or to none, so the schemes must agree.
            const https = etcd.endpoints.filter((url) => url.startsWith("https://")).length;
            if (etcd.tls !== undefined && https < etcd.endpoints.length)
              ctx.addIssue({
                code: "custom",
                path: ["endpoints"],
                message: "must all be https:// URLs with store.etcd.tls",
              });
            else if (https > 0 && https < etcd.endpoints.length)
              ctx.addIssue({
                code: "custom",
                path: ["endpoints"],
                message:
                  "must be all http:// or all https:// (the client uses TLS for every endpoint or none)",
              });
          })
          .optional(),
      })
      .strict()
      .refine((store) => store.sqlite === undefined || store.etcd === undefined, {
        message: "name either sqlite or etcd, not both",
      })
      .optional(),
  })
  .strict();

/** How long a leader's etcd lease outlives its last keepalive. */
const defaultLeaseTtl = defaults.ha.leaseTtl;

export interface ControllerConfig {
  readonly nodeName: string;
  readonly clusterAddress: string;
  /** host:port others dial; default: chosen from the bind address (src/controller/advertise-address.ts). */
  readonly advertiseAddress?: string;
  readonly bridgeAddress: string;
  readonly webAddress: string;
  /** Absolute path of the tarball `/corral.tgz` serves; absent: made with `npm pack` on first use. */
  readonly installPackage?: string;
  readonly authenticationByRequestTimeoutMs: number;
  readonly shutdownGraceMs: number;
  readonly dataDir: string;
  readonly store:
    | { readonly kind: "sqlite"; readonly path: string }
    | {
        readonly kind: "etcd";
        readonly endpoints: readonly string[];
        readonly prefix: string;
        /** Leader lease TTL in whole seconds (≥ 1). */
        readonly leaseTtlSeconds: number;
        /** How often this controller publishes the last-seen times it heard. */
        readonly lastSeenFlushMs: number;
        /**
         * etcd's client TLS, absolute paths read when the store opens (readEtcdTls). Without it an https://
         * endpoint is checked against the system's trusted roots.
         */
        readonly tls?: EtcdTlsFiles;
      };
  /** Plaintext listeners may bind beyond loopback only when the operator said so. */
  readonly insecure: boolean;
  readonly nodeCertificateLifetimeMs: number;
  /** Operator plans (besides the shipped ones) and the default number of nodes a job runs at once. */
  readonly provisioning: { readonly plansDir: string; readonly concurrency: number };
  /**
   * The controller's own node: programs its pipelines' `process` blocks may run (absolute paths;
   * empty, the default, runs none — the controller holds the CA key).
   */
  readonly pipelines?: { readonly processAllow: readonly string[] };
  /** The controller's own node: how often its machine is read again, and with which nvidia-smi. */
  readonly ownNode?: {
    readonly resourcesRefreshMs: number;
    readonly nvidiaSmi: string;
    /** Model layers its node may hold; absent: the agents' rule (GPU memory, or memory, per 512 MiB). */
    readonly maxLayers?: number;
  };
  /** Agent metrics: how often agents push, samples kept per node (defaults in src/defaults.ts). */
  readonly metrics?: { readonly intervalMs: number; readonly historySamples: number };
  /** The cluster CA: `keyFile` seals its keys in the store (required with etcd). */
  readonly ca?: { readonly keyFile?: string; readonly rotationOverlapMs: number };
  /** Open streams and pending join requests one caller may hold (defaults in src/defaults.ts). */
  readonly limits: {
    readonly streamsPerConnection: number;
    readonly streamsPerPrincipal: number;
    readonly joinRequests: {
      readonly maxPending: number;
      readonly perSource: number;
      readonly perNetwork: number;
    };
  };
  /** Heartbeat and failure-detection settings (defaults in src/defaults.ts). */
  readonly liveness: {
    readonly minInterval?: string;
    readonly maxHeartbeatsPerSecond?: number;
    readonly suspectAfterMissed?: number;
    readonly downAfter?: string;
    /** A node whose heartbeat stream ended without a goodbye is down this long after. */
    readonly streamLostDownAfter?: string;
    /** HTTP/2 keepalive of the cluster listener: a frozen agent's stream ends within their sum. */
    readonly keepaliveTime?: string;
    readonly keepaliveTimeout?: string;
  };
}

export interface ConfigOverrides {
  readonly insecure?: boolean;
  readonly dataDir?: string;
  readonly clusterAddress?: string;
  readonly bridgeAddress?: string;
  readonly webAddress?: string;
  readonly installPackage?: string;
}

/** Reads and validates a config file; every problem names its key. Relative paths are relative to the file. */
export async function loadControllerConfig(
  path: string | undefined,
  overrides: ConfigOverrides = {},
): Promise<ControllerConfig> {
  const raw = path === undefined ? {} : await readYamlFile(path);
  const baseDir = path === undefined ? process.cwd() : resolve(path, "..");
  return resolveControllerConfig(raw, baseDir, overrides, path ?? "config");
}

export function resolveControllerConfig(
  raw: unknown,
  baseDir: string,
  overrides: ConfigOverrides = {},
  source = "config",
): ControllerConfig {
  const file = parseConfigFile(fileSchema, raw, source);
  const c = defaults.controller;
  const dataDir = absolute(overrides.dataDir ?? file.dataDir ?? c.dataDir, baseDir);
  const config: ControllerConfig = {
    nodeName: file.node?.name ?? c.nodeName,
    ownNode: {
      resourcesRefreshMs: parseDuration(file.node?.resourcesRefresh ?? c.ownResourcesRefresh),
      nvidiaSmi: file.node?.nvidiaSmi ?? c.nvidiaSmi,
      ...(file.node?.maxLayers === undefined ? {} : { maxLayers: file.node.maxLayers }),
    },
    clusterAddress: overrides.clusterAddress ?? file.http?.address ?? c.clusterAddress,
    ...(file.http?.advertiseAddress === undefined ? {} : { advertiseAddress: file.http.advertiseAddress }),
    bridgeAddress: overrides.bridgeAddress ?? file.grpcBridge?.address ?? c.bridgeAddress,
    webAddress: overrides.webAddress ?? file.web?.address ?? c.webAddress,
    ...(() => {
      const pkg = overrides.installPackage ?? file.web?.installPackage;
      return pkg === undefined ? {} : { installPackage: absolute(pkg, baseDir) };
    })(),
    authenticationByRequestTimeoutMs: parseDuration(
      file.hubServer?.authenticationByRequest?.timeout ?? c.authenticationByRequestTimeout,
    ),
    shutdownGraceMs: parseDuration(file.shutdownGrace ?? c.shutdownGrace),
    dataDir,
    store:
      file.store?.etcd !== undefined
        ? {
            kind: "etcd",
            endpoints: file.store.etcd.endpoints,
            prefix: file.store.etcd.prefix ?? "/corral",
            leaseTtlSeconds: Math.max(
              1,
              Math.round(parseDuration(file.store.etcd.leaseTtl ?? defaultLeaseTtl) / 1000),
            ),
            lastSeenFlushMs: parseDuration(file.store.etcd.lastSeenFlush ?? defaults.ha.lastSeenFlush),
            ...(file.store.etcd.tls === undefined ? {} : { tls: etcdTlsFiles(file.store.etcd.tls, baseDir) }),
          }
        : { kind: "sqlite", path: absolute(file.store?.sqlite?.path ?? "corral.db", dataDir) },
    insecure: overrides.insecure ?? false,
    nodeCertificateLifetimeMs: parseDuration(
      file.identity?.nodeCertificateLifetime ?? defaults.identity.nodeCertificateLifetime,
    ),
    provisioning: {
      plansDir: absolute(
        file.provisioning?.plansDir ?? join(dataDir, defaults.provisioning.plansDirName),
        baseDir,
      ),
      concurrency: file.provisioning?.concurrency ?? defaults.provisioning.concurrency,
    },
    limits: {
      streamsPerConnection: file.limits?.streamsPerConnection ?? defaults.streams.perConnection,
      streamsPerPrincipal: file.limits?.streamsPerPrincipal ?? defaults.streams.perPrincipal,
      joinRequests: {
        maxPending: file.limits?.joinRequests?.maxPending ?? defaults.joinRequests.maxPending,
        perSource: file.limits?.joinRequests?.perSource ?? defaults.joinRequests.perSource,
        perNetwork: file.limits?.joinRequests?.perNetwork ?? defaults.joinRequests.perNetwork,
      },
    },
    liveness: Object.fromEntries(Object.entries(file.liveness ?? {}).filter(([, v]) => v !== undefined)),
    ca: {
      ...(file.ca?.keyFile === undefined ? {} : { keyFile: absolute(file.ca.keyFile, baseDir) }),
      rotationOverlapMs: parseDuration(file.ca?.rotationOverlap ?? defaults.certificates.rotationOverlap),
    },
    pipelines: { processAllow: file.pipelines?.processAllow ?? defaults.pipelines.processAllow },
    metrics: {
      intervalMs: Math.max(
        parseDuration(defaults.metrics.minInterval),
        parseDuration(file.metrics?.interval ?? defaults.metrics.interval),
      ),
      historySamples: file.metrics?.historySamples ?? defaults.metrics.historySamples,
    },
  };
  if (config.store.kind === "etcd" && config.ca?.keyFile === undefined) {
    throw CorralError.invalidArgument(
      "ca.keyFile",
      "is required with store.etcd: the controllers share one CA through etcd, its key sealed there with this file (the same file on every controller; make one with `corral certs keygen <file>`)",
    );
  }
  if (config.store.kind === "etcd") {
    // Heartbeats heard by another controller arrive up to one flush late: that must not make a node
    // that heartbeats on time look silent.
    const l = { ...defaults.liveness, ...config.liveness };
    const slack =
      (l.suspectAfterMissed - 1 - l.jitter) * parseDuration(l.minInterval, "liveness.minInterval");
    if (config.store.lastSeenFlushMs <= 0 || config.store.lastSeenFlushMs * 2 > slack)
      throw CorralError.invalidArgument(
        "store.etcd.lastSeenFlush",
        `must be above 0 and at most half the suspect slack, (suspectAfterMissed − 1 − jitter) × minInterval = ${slack} ms`,
      );
  }
  // A relative or odd program path is a config error at start, not a refusal at the first run.
  processPolicy(config.pipelines?.processAllow ?? [], "pipelines.processAllow");
  const bridgeHost = parseHostPort(config.bridgeAddress, "grpcBridge.address").host;
  if (!config.insecure && !isLoopbackHost(bridgeHost)) {
    throw CorralError.invalidArgument(
      "grpcBridge.address",
      `${config.bridgeAddress} is not a loopback address; the bridge is plaintext, so bind it to 127.0.0.1 or pass --insecure`,
    );
  }
  return config;
}

export interface EtcdTlsFiles {
  readonly caFile: string;
  readonly certFile?: string;
  readonly keyFile?: string;
}

function etcdTlsFiles(
  tls: { caFile: string; certFile?: string | undefined; keyFile?: string | undefined },
  baseDir: string,
): EtcdTlsFiles {
  return {
    caFile: absolute(tls.caFile, baseDir),
    ...(tls.certFile === undefined ? {} : { certFile: absolute(tls.certFile, baseDir) }),
    ...(tls.keyFile === undefined ? {} : { keyFile: absolute(tls.keyFile, baseDir) }),
  };
}

/**
 * Reads store.etcd.tls's files and checks that TLS can use them, so a bad file is reported by its key
 * before the first connection (etcd's client would only say that it cannot connect).
 */
export async function readEtcdTls(files: EtcdTlsFiles): Promise<EtcdTls> {
  const read = async (key: string, path: string): Promise<Buffer> => {
    try {
      return await readFile(path);
    } catch (error) {
      const code = (error as NodeJS.ErrnoException).code === "ENOENT" ? "NOT_FOUND" : "FAILED_PRECONDITION";
      throw new CorralError(code, `store.etcd.tls.${key}: cannot read ${path}: ${(error as Error).message}`, {
        cause: error,
      });
    }
  };
  const usable = (key: string, path: string, options: SecureContextOptions) => {
    try {
      createSecureContext(options);
    } catch (error) {
      throw new CorralError(
        "FAILED_PRECONDITION",
        `store.etcd.tls.${key}: ${path}: ${(error as Error).message}`,
        {
          cause: error,
        },
      );
    }
  };
  const ca = await read("caFile", files.caFile);
  // An unparsable CA bundle would otherwise be skipped silently, leaving nothing trusted.
  if (!/-----BEGIN CERTIFICATE-----/.test(ca.toString("latin1")))
    throw new CorralError(
      "FAILED_PRECONDITION",
      `store.etcd.tls.caFile: ${files.caFile} holds no PEM certificate`,
    );
  usable("caFile", files.caFile, { ca });
  if (files.certFile === undefined || files.keyFile === undefined) return { ca };
  const cert = await read("certFile", files.certFile);
  const key = await read("keyFile", files.keyFile);
  usable("keyFile", files.keyFile, { key });
  usable("certFile", files.certFile, { cert, key });
  return { ca, cert, key };
}

function absolute(path: string, base: string): string {
  return isAbsolute(path) ? path : resolve(base, path);
}
