import { setMaxListeners } from "node:events";
import { type Clock, systemClock } from "../base/clock.ts";
import type { FaceContext } from "../faces/face-context.ts";
import { AgentLogRing } from "../host/logs/ring-log-source.ts";
import type { Logger } from "../observability/logger.ts";
import type { HealthRegistry } from "../rpc/health/health-registry.ts";
import type { RpcServer } from "../rpc/rpc-server.ts";
import type { CertificateAuthority } from "../security/certificate-authority.ts";
import { securePrivateDir } from "../security/private-dir.ts";
import { assembleCore } from "./assemble-core.ts";
import { assembleEngines } from "./assemble-engines.ts";
import { assembleFaceContext } from "./assemble-faces.ts";
import { JoinLine } from "./assemble-install.ts";
import { openGrpcListeners, serveFaces } from "./assemble-listeners.ts";
import { assembleOwnNode } from "./assemble-own-node.ts";
import { assembleSecurity } from "./assemble-security.ts";
import { assembleStore } from "./assemble-store.ts";
import { ensureClusterId } from "./cluster-facts.ts";
import type { ControllerConfig } from "./config.ts";
import { Stack } from "./stack.ts";
import type { WebListener } from "./web-listener.ts";

export interface ControllerAddresses {
  /** TLS gRPC: mTLS for nodes and operators; joining needs no certificate. */
  readonly cluster: string;
  /** Plaintext gRPC on loopback; callers act as admin. */
  readonly bridge: string;
  /** gRPC-Web / Connect (bearer tokens), /metrics, /healthz. */
  readonly web: string;
}

/**
 * The controller process, a composition root: store, security, core, engines, faces and three
 * listeners, each assembled in its own file (assemble-*.ts). `start` brings everything up or
 * tears down what it had started; `close` drains in-flight calls, then cuts off what is left.
 */
export class Controller implements AsyncDisposable {
  readonly addresses: ControllerAddresses;
  readonly ca: CertificateAuthority;
  readonly context: FaceContext;
  readonly adminCredentialsDir: string;
  readonly #web: WebListener;
  readonly #servers: readonly RpcServer[];
  readonly #health: readonly HealthRegistry[];
  /** Everything started, stopped in reverse once the listeners have drained. */
  readonly #stack: Stack;
  readonly #logger: Logger;
  readonly #graceMs: number;
  readonly #draining: { value: boolean };
  readonly #stopping: AbortController;
  #closing: Promise<void> | undefined;

  private constructor(parts: {
    addresses: ControllerAddresses;
    ca: CertificateAuthority;
    context: FaceContext;
    adminCredentialsDir: string;
    web: WebListener;
    servers: readonly RpcServer[];
    health: readonly HealthRegistry[];
    stack: Stack;
    logger: Logger;
    graceMs: number;
    draining: { value: boolean };
    stopping: AbortController;
  }) {
    this.addresses = parts.addresses;
    this.ca = parts.ca;
    this.context = parts.context;
    this.adminCredentialsDir = parts.adminCredentialsDir;
    this.#web = parts.web;
    this.#servers = parts.servers;
    this.#health = parts.health;
    this.#stack = parts.stack;
    this.#logger = parts.logger;
    this.#graceMs = parts.graceMs;
    this.#draining = parts.draining;
    this.#stopping = parts.stopping;
  }

  /**
   * Brings the parts up in the order they lean on each other (each assembler in its own file, with the
   * stack of what it started); if one fails, what had started is stopped again before the error goes on.
   */
  static async start(
    config: ControllerConfig,
    logger: Logger,
    clock: Clock = systemClock,
    logRing: AgentLogRing = new AgentLogRing(),
  ): Promise<Controller> {
    await securePrivateDir(config.dataDir, (what) =>
      logger.warn(`data dir was readable by other users, tightened: ${what}`),
    );
    const stack = new Stack();
    try {
      const storage = await assembleStore(config, logger);
      stack.adopt(storage.stack);
      const core = assembleCore(config, storage, clock, logger);
      const security = await assembleSecurity(config, storage, core, clock, logger);
      stack.adopt(security.stack);
      const clusterId = await ensureClusterId(storage.store);
      const listeners = await openGrpcListeners(config, core, security, logger);
      stack.adopt(listeners.stack);
      const own = await assembleOwnNode(
        config,
        storage,
        core,
        security,
        listeners.advertise,
        logger,
        logRing,
      );
      stack.adopt(own.stack);
      const engines = await assembleEngines({
        config,
        storage,
        core,
        own,
        clusterId,
        advertiseAddress: listeners.advertise.address,
        clock,
        logger,
      });
      stack.adopt(engines.stack);
      const { stopping, joinLine } = sharedLateParts();
      const context = assembleFaceContext({
        config,
        storage,
        core,
        security,
        own,
        engines,
        clusterId,
        advertiseAddress: listeners.advertise.address,
        clock,
        logRing,
        stopping: stopping.signal,
        joinLine,
      });
      const served = await serveFaces(config, listeners, context, core, { line: joinLine, logger });
      const controller = new Controller({
        addresses: { ...listeners.addresses, web: served.web.address },
        ca: security.ca,
        context,
        adminCredentialsDir: security.adminCredentialsDir,
        web: served.web,
        servers: [listeners.cluster, listeners.bridge],
        health: served.health,
        stack,
        logger,
        graceMs: config.shutdownGraceMs,
        draining: served.draining,
        stopping,
      });
      logger.info(
        { ...controller.addresses, clusterId, caFingerprint: security.ca.fingerprint },
        "controller started",
      );
      return controller;
    } catch (error) {
      await stack.unwind();
      throw error;
    }
  }

  get webUrl(): string {
    return this.#web.url;
  }

  /** Stops taking new calls, waits up to the grace period for in-flight ones, then cuts off the rest. */
  close(): Promise<void> {
    this.#closing ??= this.#close();
    return this.#closing;
  }

  async #close(): Promise<void> {
    this.#draining.value = true;
    for (const health of this.#health) health.shutdown();
    this.#logger.info({ graceMs: this.#graceMs }, "controller draining");
    const closing = Promise.all([
      ...this.#servers.map((s) => s.close(this.#graceMs)),
      this.#web.close(this.#graceMs),
    ]);
    // Once the servers refuse new calls: agents whose heartbeat stream ends here go elsewhere.
    this.#stopping.abort();
    await closing;
    await this.#stack.close();
    this.#logger.info("controller stopped");
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.close();
  }
}

/**
 * What the faces and the listeners share: the signal aborted when the controller starts to drain (every
 * open stream listens, one per agent: thousands), and the one-line join, known once the web listener is up.
 */
function sharedLateParts(): { stopping: AbortController; joinLine: JoinLine } {
  const stopping = new AbortController();
  setMaxListeners(0, stopping.signal);
  return { stopping, joinLine: new JoinLine() };
}
