import type { ConnectRouter } from "@connectrpc/connect";
import { ServerCredentials } from "@grpc/grpc-js";
import { formatHostPort, parseHostPort } from "../base/address.ts";
import type { FaceContext } from "../faces/face-context.ts";
import type { Logger } from "../observability/logger.ts";
import { addConnectService } from "../rpc/connect-routes.ts";
import { type HealthRegistry, ServingStatus } from "../rpc/health/health-registry.ts";
import { mountHealth } from "../rpc/health/health-service.ts";
import { type ListenerChain, listenerChain } from "../rpc/listener-chain.ts";
import { mountReflection } from "../rpc/reflection/reflection-service.ts";
import { RpcServer } from "../rpc/rpc-server.ts";
import { controllerStreamLimitKeys, StreamLimits } from "../rpc/stream-limits.ts";
import { optionalClientCertificateCredentials } from "../security/tls-credentials.ts";
import { chooseAdvertiseAddress } from "./advertise-address.ts";
import type { Core } from "./assemble-core.ts";
import type { JoinLine } from "./assemble-install.ts";
import type { Security } from "./assemble-security.ts";
import type { ControllerConfig } from "./config.ts";
import { browserServices, grpcServices } from "./service-table.ts";
import { assemble, type Stack } from "./stack.ts";
import { controllerListenerTls, type ListenerTls } from "./tls-material.ts";
import { WebListener } from "./web-listener.ts";

/** The two gRPC listeners, bound and not yet serving anything (services are added once the faces exist). */
export interface GrpcListeners {
  readonly cluster: RpcServer;
  readonly bridge: RpcServer;
  /** The chain each listener runs around a call; the web listener's is made from the same parts. */
  readonly chainFor: (listener: ListenerChain["listener"]) => ListenerChain;
  readonly tls: ListenerTls;
  /** Where the listeners are bound (with the ports the kernel gave). */
  readonly addresses: { readonly cluster: string; readonly bridge: string };
  /** What other nodes dial: the advertised host and port. */
  readonly advertise: { readonly host: string; readonly port: number; readonly address: string };
  readonly stack: Stack;
}

/** Binds the cluster (mTLS) and bridge (loopback) listeners; the address others dial is chosen first. */
export function openGrpcListeners(
  config: ControllerConfig,
  core: Pick<Core, "audit" | "metrics">,
  security: Pick<Security, "ca" | "resolver">,
  logger: Logger,
): Promise<GrpcListeners> {
  return assemble(async (stack) => {
    const clusterListen = parseHostPort(config.clusterAddress, "http.address");
    const configuredAdvertise =
      config.advertiseAddress === undefined
        ? undefined
        : parseHostPort(config.advertiseAddress, "http.advertiseAddress");
    // Chosen before anything listens: a controller that cannot say where it is reached does not start.
    const advertiseHost = chooseAdvertiseAddress({
      bind: clusterListen,
      configured: configuredAdvertise,
      withPeers: config.store.kind === "etcd",
    }).host;
    // One count for every listener: a principal's streams add up wherever they are opened.
    const streamLimits = new StreamLimits(
      { perConnection: config.limits.streamsPerConnection, perPrincipal: config.limits.streamsPerPrincipal },
      controllerStreamLimitKeys,
    );
    const chainFor = (listener: ListenerChain["listener"]) =>
      listenerChain(listener, { ...security, ...core, logger, streamLimits });
    const server = (
      chain: ListenerChain,
      keepalive: Partial<Record<"keepaliveTime" | "keepaliveTimeout", string>>,
    ) =>
      new RpcServer({
        interceptors: chain.interceptors,
        streamLimits: chain.streamLimits,
        logger,
        ...keepalive,
      });
    // Agents hold their heartbeat streams on the cluster listener: keepalive is how a frozen one is found.
    const cluster = server(
      chainFor("cluster"),
      pickDefined({
        keepaliveTime: config.liveness.keepaliveTime,
        keepaliveTimeout: config.liveness.keepaliveTimeout,
      }),
    );
    const bridge = server(chainFor("bridge"), {});
    stack.defer(() => {
      cluster.forceClose();
      bridge.forceClose();
    });
    // Follows the CA: a rotation swaps the certificate and the trusted bundle without a restart.
    const tls = await controllerListenerTls(security.ca, config.nodeName, clusterListen, logger, [
      advertiseHost,
    ]);
    stack.defer(() => tls.close());
    const clusterPort = await cluster.listen(
      config.clusterAddress,
      optionalClientCertificateCredentials(tls.certificates),
    );
    const advertisePort = configuredAdvertise?.port ?? clusterPort;
    const bridgePort = await bridge.listen(config.bridgeAddress, ServerCredentials.createInsecure());
    const bridgeHost = parseHostPort(config.bridgeAddress, "grpcBridge.address").host;
    return {
      cluster,
      bridge,
      chainFor,
      tls,
      addresses: {
        cluster: formatHostPort({ host: clusterListen.host, port: clusterPort }),
        bridge: formatHostPort({ host: bridgeHost, port: bridgePort }),
      },
      advertise: {
        host: advertiseHost,
        port: advertisePort,
        address: formatHostPort({ host: advertiseHost, port: advertisePort }),
      },
    };
  });
}

export interface ServedFaces {
  readonly web: WebListener;
  readonly health: readonly HealthRegistry[];
  /** Set when the controller starts draining: /healthz answers 503 from then on. */
  readonly draining: { value: boolean };
}

/** Puts the faces on the gRPC listeners (with reflection and health) and starts the web listener. */
export async function serveFaces(
  config: ControllerConfig,
  listeners: GrpcListeners,
  context: FaceContext,
  core: Pick<Core, "metrics">,
  join: { readonly line: JoinLine; readonly logger: Logger },
): Promise<ServedFaces> {
  const health: HealthRegistry[] = [];
  for (const server of [listeners.cluster, listeners.bridge]) {
    for (const { service, impl } of grpcServices(context)) server.add(service, impl);
    mountReflection(server);
    const registryOfServer = mountHealth(server);
    for (const service of server.services) registryOfServer.set(service.typeName, ServingStatus.SERVING);
    health.push(registryOfServer);
  }
  const draining = { value: false };
  const chain = listeners.chainFor("web");
  const web = await WebListener.start({
    address: config.webAddress,
    routes: (router: ConnectRouter) => {
      for (const { service, impl } of browserServices(context))
        addConnectService(router, service, impl, chain);
    },
    metrics: core.metrics,
    isHealthy: () => !draining.value,
    tls: listeners.tls.current(),
    extraRoutes: join.line.routes({
      config,
      ca: context.ca,
      tokens: context.tokens,
      advertiseAddress: listeners.advertise.address,
      logger: join.logger,
    }),
  });
  join.line.listening(web, listeners.advertise.host, listeners.tls.current().certificatePem);
  return { web, health, draining };
}

/** The entries that are set: optional settings pass on as absent, not as undefined. */
function pickDefined<T extends Record<string, unknown>>(values: T): Partial<T> {
  return Object.fromEntries(Object.entries(values).filter(([, v]) => v !== undefined)) as Partial<T>;
}
