import { mkdir } from "node:fs/promises";
import { join } from "node:path";
import type { ConnectRouter } from "@connectrpc/connect";
import { ServerCredentials } from "@grpc/grpc-js";
import { formatHostPort, parseHostPort } from "../core/address.ts";
import { type Clock, systemClock } from "../core/clock.ts";
import { EventFeed } from "../core/event-feed.ts";
import { nodeStatuses } from "../core/node.ts";
import { NodeRegistry } from "../core/node-registry.ts";
import type { FaceContext } from "../faces/face-context.ts";
import type { Logger } from "../observability/logger.ts";
import { ControllerMetrics } from "../observability/metrics.ts";
import { addConnectService } from "../rpc/connect-routes.ts";
import { ServingStatus } from "../rpc/health/health-registry.ts";
import { mountHealth } from "../rpc/health/health-service.ts";
import { observeCalls } from "../rpc/interceptors.ts";
import { mountReflection } from "../rpc/reflection/reflection-service.ts";
import { RpcServer } from "../rpc/rpc-server.ts";
import { CertificateAuthority } from "../security/certificate-authority.ts";
import { SqliteStore } from "../store/sqlite/sqlite-store.ts";
import type { Store } from "../store/store.ts";
import { corralVersion } from "../version.ts";
import { ensureClusterId, ensureControllerNode } from "./cluster-facts.ts";
import type { ControllerConfig } from "./config.ts";
import { browserServices, grpcServices } from "./service-table.ts";
import { issueControllerCertificate } from "./tls-material.ts";
import { WebListener } from "./web-listener.ts";

export interface ControllerAddresses {
  /** TLS gRPC (mTLS for nodes and operators). */
  readonly cluster: string;
  /** Plaintext gRPC on loopback. */
  readonly bridge: string;
  /** gRPC-Web / Connect, /metrics, /healthz. */
  readonly web: string;
}

/**
 * The controller process: store, core, faces and three listeners. `start` brings everything up or
 * tears down what it had started; `close` drains in-flight calls, then cuts off what is left.
 */
export class Controller implements AsyncDisposable {
  readonly addresses: ControllerAddresses;
  readonly ca: CertificateAuthority;
  readonly context: FaceContext;
  readonly #rpc: RpcServer;
  readonly #web: WebListener;
  readonly #store: Store;
  readonly #logger: Logger;
  readonly #graceMs: number;
  #closing: Promise<void> | undefined;

  private constructor(parts: {
    addresses: ControllerAddresses;
    ca: CertificateAuthority;
    context: FaceContext;
    rpc: RpcServer;
    web: WebListener;
    store: Store;
    logger: Logger;
    graceMs: number;
  }) {
    this.addresses = parts.addresses;
    this.ca = parts.ca;
    this.context = parts.context;
    this.#rpc = parts.rpc;
    this.#web = parts.web;
    this.#store = parts.store;
    this.#logger = parts.logger;
    this.#graceMs = parts.graceMs;
  }

  static async start(
    config: ControllerConfig,
    logger: Logger,
    clock: Clock = systemClock,
  ): Promise<Controller> {
    await mkdir(config.dataDir, { recursive: true, mode: 0o700 });
    const cleanup: (() => Promise<void>)[] = [];
    try {
      const store = await SqliteStore.open({ path: config.store.path });
      cleanup.push(() => store.close());
      const ca = await CertificateAuthority.loadOrCreate(join(config.dataDir, "ca"), config.nodeName);
      const clusterListen = parseHostPort(config.clusterAddress, "http.address");
      const registry = new NodeRegistry(store, clock);
      const feed = new EventFeed(store);
      const clusterId = await ensureClusterId(store);
      const advertiseHost = ["0.0.0.0", "::"].includes(clusterListen.host) ? "127.0.0.1" : clusterListen.host;

      const metrics = new ControllerMetrics({
        async countNodesByStatus() {
          const { nodes } = await registry.list();
          return Object.fromEntries(
            nodeStatuses.map((status) => [status, nodes.filter((n) => n.status === status).length]),
          );
        },
        storeRevision: () => store.revision(),
      });
      const rpc = new RpcServer({ interceptors: [observeCalls(logger, metrics)] });
      cleanup.push(async () => rpc.forceClose());
      const certificate = await issueControllerCertificate(ca, config.nodeName, clusterListen);
      const clusterPort = await rpc.listen(
        config.clusterAddress,
        ServerCredentials.createSsl(
          Buffer.from(ca.certificatePem),
          [
            {
              private_key: Buffer.from(certificate.privateKeyPem),
              cert_chain: Buffer.from(certificate.certificatePem),
            },
          ],
          // Nodes present no certificate while they join; each call is authorized on its own.
          false,
        ),
      );
      const bridgePort = await rpc.listen(config.bridgeAddress, ServerCredentials.createInsecure());
      const advertiseAddress = formatHostPort({ host: advertiseHost, port: clusterPort });
      const controllerNodeId = await ensureControllerNode(store, registry, {
        name: config.nodeName,
        address: advertiseHost,
        port: clusterPort,
        version: corralVersion,
      });
      const context: FaceContext = {
        registry,
        feed,
        store,
        clock,
        facts: {
          clusterId,
          controllerNodeId,
          controllerName: config.nodeName,
          advertiseAddress,
          version: corralVersion,
          startedAt: clock.now(),
          storeKind: `sqlite (${config.store.path})`,
        },
      };
      for (const { service, impl } of grpcServices(context)) rpc.add(service, impl);
      mountReflection(rpc);
      const health = mountHealth(rpc);
      for (const service of rpc.services) health.set(service.typeName, ServingStatus.SERVING);

      let draining = false;
      const web = await WebListener.start({
        address: config.webAddress,
        routes: (router: ConnectRouter) => {
          for (const { service, impl } of browserServices(context)) addConnectService(router, service, impl);
        },
        metrics,
        isHealthy: () => !draining,
        tls: certificate,
      });
      const controller = new Controller({
        addresses: {
          cluster: formatHostPort({ host: clusterListen.host, port: clusterPort }),
          bridge: formatHostPort({
            host: parseHostPort(config.bridgeAddress, "grpcBridge.address").host,
            port: bridgePort,
          }),
          web: web.address,
        },
        ca,
        context,
        rpc,
        web,
        store,
        logger,
        graceMs: config.shutdownGraceMs,
      });
      controller.#onDrain = () => {
        draining = true;
        health.shutdown();
      };
      logger.info(
        { ...controller.addresses, clusterId, caFingerprint: ca.fingerprint },
        "controller started",
      );
      return controller;
    } catch (error) {
      for (const undo of cleanup.reverse()) await undo().catch(() => undefined);
      throw error;
    }
  }

  #onDrain: () => void = () => undefined;

  get webUrl(): string {
    return this.#web.url;
  }

  /** Stops taking new calls, waits up to the grace period for in-flight ones, then cuts off the rest. */
  close(): Promise<void> {
    this.#closing ??= this.#close();
    return this.#closing;
  }

  async #close(): Promise<void> {
    this.#onDrain();
    this.#logger.info({ graceMs: this.#graceMs }, "controller draining");
    await Promise.all([this.#rpc.close(this.#graceMs), this.#web.close(this.#graceMs)]);
    await this.#store.close();
    this.#logger.info("controller stopped");
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.close();
  }
}
