import { join } from "node:path";
import type { ConnectRouter } from "@connectrpc/connect";
import { ServerCredentials } from "@grpc/grpc-js";
import { createLoadReader } from "../agent/machine/system-resources.ts";
import { createMetricsSampler } from "../agent/metrics-pusher.ts";
import { localLoggingService } from "../agent/services/logging-service.ts";
import { createNodeAgent } from "../agent/services/node-agent/node-agent.ts";
import { localPipelineRunsService } from "../agent/services/pipeline-runs-service.ts";
import { localPipelinesService } from "../agent/services/pipelines-service.ts";
import { formatHostPort, parseHostPort } from "../base/address.ts";
import { type Clock, systemClock } from "../base/clock.ts";
import { parseDuration } from "../base/duration.ts";
import { JoinRequestBook } from "../core/admission/join-requests.ts";
import { TokenRegistry } from "../core/admission/tokens.ts";
import { AuditLog } from "../core/events/audit-log.ts";
import { EventFeed } from "../core/events/event-feed.ts";
import { MetricsHistory } from "../core/metrics/metrics-history.ts";
import { ModelRegistry } from "../core/models/model-registry.ts";
import { nodeStatuses } from "../core/nodes/node.ts";
import { NodeHealthBook } from "../core/nodes/node-health.ts";
import { nodeKeyPrefix, nodeNameKeyPrefix } from "../core/nodes/node-keys.ts";
import { NodeLoads } from "../core/nodes/node-load.ts";
import { NodeRegistry } from "../core/nodes/node-registry.ts";
import { defaults } from "../defaults.ts";
import { ClusterManager } from "../engines/cluster-manager.ts";
import { LastSeenBatcher } from "../engines/last-seen-batcher.ts";
import { Membership } from "../engines/membership.ts";
import { PlacementReconciler } from "../engines/placement-reconciler.ts";
import { ProvisioningDispatcher } from "../engines/provisioning-dispatcher.ts";
import { controllerUdpTargets } from "../faces/corral/pipeline-udp-targets.ts";
import type { FaceContext } from "../faces/face-context.ts";
import { ControllerPeerService } from "../gen/corral/v1/peers_pb.ts";
import { AgentLogRing } from "../host/logs/ring-log-source.ts";
import { ProcessLedger } from "../host/process-ledger.ts";
import type { Logger } from "../observability/logger.ts";
import { ControllerMetrics } from "../observability/metrics.ts";
import { PipelineManager } from "../pipelines/manager.ts";
import { processPolicy } from "../pipelines/process-policy.ts";
import { type AuthorizeOptions, authorizeCalls } from "../rpc/authorize.ts";
import { addConnectService } from "../rpc/connect-routes.ts";
import { type HealthRegistry, ServingStatus } from "../rpc/health/health-registry.ts";
import { mountHealth } from "../rpc/health/health-service.ts";
import { observeCalls } from "../rpc/interceptors.ts";
import { mountReflection } from "../rpc/reflection/reflection-service.ts";
import { RpcServer } from "../rpc/rpc-server.ts";
import { controllerStreamLimitKeys, StreamLimits } from "../rpc/stream-limits.ts";
import { Admission } from "../security/admission.ts";
import type { CertificateAuthority } from "../security/certificate-authority.ts";
import { revokedPrefix } from "../security/certificate-inventory.ts";
import { PrincipalResolver } from "../security/principal-resolver.ts";
import { securePrivateDir } from "../security/private-dir.ts";
import { optionalClientCertificateCredentials } from "../security/tls-credentials.ts";
import { EtcdStore } from "../store/etcd/etcd-store.ts";
import { ReadCache } from "../store/etcd/read-cache.ts";
import { SqliteStore } from "../store/sqlite/sqlite-store.ts";
import type { Store } from "../store/store.ts";
import { corralVersion } from "../version.ts";
import { ensureAdminCredentials } from "./admin-credentials.ts";
import { chooseAdvertiseAddress } from "./advertise-address.ts";
import { AgentDialer } from "./agent-dialer.ts";
import { openClusterCa } from "./ca-setup.ts";
import { controllerNodeKeyOf, ensureClusterId, ensureControllerNode } from "./cluster-facts.ts";
import { type ControllerConfig, readEtcdTls } from "./config.ts";
import { ControllerPresenceSweep } from "./controller-presence-sweep.ts";
import { ControllerRegistry } from "./controller-registry.ts";
import { alwaysLeader, EtcdLeaderElection, type LeaderGate } from "./leader-election.ts";
import { liveControllerAddresses } from "./live-controller-addresses.ts";
import { registerNodeMetricGauges } from "./metrics-gauges.ts";
import { OwnNodeMetrics } from "./metrics-own-node.ts";
import { OwnNodeResources } from "./own-node-resources.ts";
import { PeerReplicator } from "./peer-replicator.ts";
import { PlanLibrary, shippedPlansDir } from "./provisioning-plans.ts";
import { agentStepRunner, localStepRunner } from "./provisioning-runners.ts";
import { browserServices, grpcServices } from "./service-table.ts";
import { controllerListenerTls } from "./tls-material.ts";
import { WebListener } from "./web-listener.ts";

export interface ControllerAddresses {
  /** TLS gRPC: mTLS for nodes and operators; joining needs no certificate. */
  readonly cluster: string;
  /** Plaintext gRPC on loopback; callers act as admin. */
  readonly bridge: string;
  /** gRPC-Web / Connect (bearer tokens), /metrics, /healthz. */
  readonly web: string;
}

/** A part that must be stopped when the controller stops, in reverse order of starting. */
type Stopper = () => Promise<void>;

/**
 * The controller process: store, core, faces and three listeners. `start` brings everything up or
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
  readonly #stoppers: readonly Stopper[];
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
    servers: RpcServer[];
    health: HealthRegistry[];
    stoppers: Stopper[];
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
    this.#stoppers = parts.stoppers;
    this.#logger = parts.logger;
    this.#graceMs = parts.graceMs;
    this.#draining = parts.draining;
    this.#stopping = parts.stopping;
  }

  static async start(
    config: ControllerConfig,
    logger: Logger,
    clock: Clock = systemClock,
    logRing: AgentLogRing = new AgentLogRing(),
  ): Promise<Controller> {
    await securePrivateDir(config.dataDir, (what) =>
      logger.warn(`data dir was readable by other users, tightened: ${what}`),
    );
    const stoppers: Stopper[] = [];
    try {
      const storeConfig = config.store;
      const etcdTls =
        storeConfig.kind === "etcd" && storeConfig.tls !== undefined
          ? await readEtcdTls(storeConfig.tls)
          : undefined;
      const etcd =
        storeConfig.kind === "etcd"
          ? await EtcdStore.open({
              endpoints: [...storeConfig.endpoints],
              prefix: storeConfig.prefix,
              ...(etcdTls === undefined ? {} : { tls: etcdTls }),
            })
          : undefined;
      const store: Store =
        etcd ?? (await SqliteStore.open({ path: storeConfig.kind === "sqlite" ? storeConfig.path : "" }));
      stoppers.push(() => store.close());
      // With SQLite this controller is the only one, so it always leads.
      const leader: LeaderGate =
        storeConfig.kind === "etcd"
          ? await EtcdLeaderElection.start({
              endpoints: storeConfig.endpoints,
              prefix: storeConfig.prefix,
              name: config.nodeName,
              ttlSeconds: storeConfig.leaseTtlSeconds,
              logger,
              ...(etcdTls === undefined ? {} : { tls: etcdTls }),
            })
          : alwaysLeader(config.nodeName);
      stoppers.push(() => leader.close());
      // The leader's writes (liveness sweeps, placement) carry its claim: etcd refuses them once it is gone.
      const leaderStore: Store =
        etcd === undefined
          ? store
          : etcd.fenced(
              () => leader.fence?.(),
              (error) => leader.lost?.(error),
            );
      // One CA for every controller of the cluster, in the store (see ca-setup.ts).
      const ca = await openClusterCa({
        store,
        dataDir: config.dataDir,
        clusterName: config.nodeName,
        ...(config.ca?.keyFile === undefined ? {} : { keyFile: config.ca.keyFile }),
        ...(config.ca === undefined ? {} : { rotationOverlapMs: config.ca.rotationOverlapMs }),
        logger,
        clock,
        isLeader: () => leader.isLeader(),
      });
      stoppers.push(() => ca.close());
      const adminCredentialsDir = await ensureAdminCredentials(ca, config.dataDir);
      const clusterListen = parseHostPort(config.clusterAddress, "http.address");
      const registry = new NodeRegistry(store, clock);
      const feed = new EventFeed(store);
      const tokens = new TokenRegistry(store, clock);
      const joinRequests = new JoinRequestBook(
        store,
        clock,
        {
          ...config.limits.joinRequests,
          perSourcePerMinute: defaults.joinRequests.perSourcePerMinute,
          keepDecidedMs: parseDuration(defaults.joinRequests.keepDecided),
        },
        (evicted, reason) =>
          logger.warn(
            { request: evicted.id, source: evicted.sourceAddress, name: evicted.name.slice(0, 128) },
            `join request ${reason}`,
          ),
      );
      const audit = new AuditLog(store, clock);
      // With etcd, the caller's node and the revocation list are read from a watched mirror rather than
      // from etcd on every call (two etcd reads per heartbeat otherwise); see read-cache.ts.
      const readCache =
        etcd === undefined
          ? undefined
          : new ReadCache({
              store: etcd,
              prefixes: [nodeKeyPrefix, nodeNameKeyPrefix, revokedPrefix],
              logger,
            });
      if (readCache !== undefined) stoppers.push(() => readCache.close());
      const lookups = readCache?.view();
      const resolver =
        lookups === undefined
          ? new PrincipalResolver(registry, tokens, store, ca)
          : new PrincipalResolver(new NodeRegistry(lookups, clock), tokens, lookups, ca);
      const clusterId = await ensureClusterId(store);
      const configuredAdvertise =
        config.advertiseAddress === undefined
          ? undefined
          : parseHostPort(config.advertiseAddress, "http.advertiseAddress");
      // Chosen before anything listens: a controller that cannot say where it is reached does not start.
      const advertiseHost = chooseAdvertiseAddress({
        bind: clusterListen,
        configured: configuredAdvertise,
        withPeers: storeConfig.kind === "etcd",
      }).host;

      const metrics = new ControllerMetrics({
        async countNodesByStatus() {
          const { nodes } = await registry.list();
          return Object.fromEntries(
            nodeStatuses.map((status) => [status, nodes.filter((n) => n.status === status).length]),
          );
        },
        storeRevision: () => store.revision(),
      });
      const metricsSettings = config.metrics ?? {
        intervalMs: parseDuration(defaults.metrics.interval),
        historySamples: defaults.metrics.historySamples,
      };
      const metricsHistory = new MetricsHistory({
        capacity: metricsSettings.historySamples,
        maxQueued: defaults.metrics.maxQueued,
      });
      registerNodeMetricGauges(metrics.registry, metricsHistory, async () => {
        const { nodes } = await registry.list();
        return new Map(nodes.map((node) => [node.id, node.name]));
      });
      const authorization = (listener: AuthorizeOptions["listener"]): AuthorizeOptions => ({
        listener,
        resolver,
        audit,
        onAuditError: (error) => logger.error({ err: error }, "could not write an audit entry"),
      });
      const observe = observeCalls(logger, metrics);
      // One count for every listener: a principal's streams add up wherever they are opened.
      const streamLimits = new StreamLimits(
        {
          perConnection: config.limits.streamsPerConnection,
          perPrincipal: config.limits.streamsPerPrincipal,
        },
        controllerStreamLimitKeys,
      );
      const cluster = new RpcServer({
        interceptors: [observe, authorizeCalls(authorization("cluster"))],
        streamLimits,
        logger,
        // Agents hold their heartbeat streams here: keepalive is how a frozen one is found.
        ...pickDefined({
          keepaliveTime: config.liveness.keepaliveTime,
          keepaliveTimeout: config.liveness.keepaliveTimeout,
        }),
      });
      const bridge = new RpcServer({
        interceptors: [observe, authorizeCalls(authorization("bridge"))],
        streamLimits,
        logger,
      });
      stoppers.push(async () => {
        cluster.forceClose();
        bridge.forceClose();
      });

      // Follows the CA: a rotation swaps the certificate and the trusted bundle without a restart.
      const tls = await controllerListenerTls(ca, config.nodeName, clusterListen, logger, [advertiseHost]);
      stoppers.push(async () => tls.close());
      const clusterPort = await cluster.listen(
        config.clusterAddress,
        optionalClientCertificateCredentials(tls.certificates),
      );
      const advertisePort = configuredAdvertise?.port ?? clusterPort;
      const advertiseAddress = formatHostPort({ host: advertiseHost, port: advertisePort });
      const bridgePort = await bridge.listen(config.bridgeAddress, ServerCredentials.createInsecure());
      const controllerNodeId = await ensureControllerNode(
        store,
        registry,
        {
          name: config.nodeName,
          address: advertiseHost,
          port: advertisePort,
          version: corralVersion,
        },
        controllerNodeKeyOf(etcd === undefined ? undefined : config.nodeName),
      );
      const ownNode = config.ownNode ?? {
        resourcesRefreshMs: parseDuration(defaults.controller.ownResourcesRefresh),
        nvidiaSmi: defaults.controller.nvidiaSmi,
      };
      const localNode = await createNodeAgent({
        dataDir: config.dataDir,
        nodeId: () => controllerNodeId,
        controllerState: () => "CONNECTED",
        logger,
        logRing,
        nvidiaSmi: ownNode.nvidiaSmi,
      });
      stoppers.push(() => localNode.close());
      // The controller's own node starts runs and steps like an agent: what a killed controller left
      // running is reaped before its pipelines start again.
      const ledger = await ProcessLedger.open(join(config.dataDir, defaults.agent.processLedgerFile), {
        graceMs: parseDuration(defaults.agent.reapGrace),
        onReaped: (entry) =>
          logger.warn({ pgid: entry.pgid, what: entry.what }, "killed a process group left by the last run"),
        onWriteError: (error) =>
          logger.warn({ error: error.message }, "could not update the ledger of process groups"),
      });
      const localPipelines: PipelineManager = await PipelineManager.open({
        recorder: ledger,
        dataDir: join(config.dataDir, "pipelines"),
        registerLogs: (run) => localNode.logs.registerPipeline(run.id, run.logs),
        // The controller's machine holds the CA key: its node runs process blocks only when its
        // config names programs (default: none).
        processPolicy: processPolicy(
          config.pipelines?.processAllow ?? defaults.pipelines.processAllow,
          "pipelines.processAllow",
        ),
        // Called only once runs start, after `agents` below exists.
        resolveUdpTarget: controllerUdpTargets({
          registry,
          agents: () => agents,
          controllerNodeId,
          manager: () => localPipelines,
        }),
      });
      stoppers.push(() => localPipelines.close());
      const leaderRegistry = leaderStore === store ? registry : new NodeRegistry(leaderStore, clock);
      const membership = new Membership({
        registry,
        feed,
        clock,
        logger,
        controllerNodeId,
        liveness: config.liveness,
        isLeader: () => leader.isLeader(),
        sweepRegistry: leaderRegistry,
      });
      await membership.start();
      stoppers.push(() => membership.close());
      // Several controllers: each registers under its own lease and shares the heartbeats it hears.
      const controllers =
        etcd === undefined || storeConfig.kind !== "etcd"
          ? undefined
          : await ControllerRegistry.start({
              client: etcd.client,
              prefix: storeConfig.prefix,
              ttlSeconds: storeConfig.leaseTtlSeconds,
              logger,
              info: {
                name: config.nodeName,
                clusterAddress: advertiseAddress,
                version: corralVersion,
                startedAt: clock.now(),
              },
            });
      if (controllers !== undefined && storeConfig.kind === "etcd") {
        stoppers.push(() => controllers.close());
        const batcher = new LastSeenBatcher({
          registry: controllers,
          membership,
          everyMs: storeConfig.lastSeenFlushMs,
          logger,
        });
        stoppers.push(() => batcher.close());
        const presence = new ControllerPresenceSweep({
          controllers: () => controllers.list(),
          registry,
          leaderRegistry,
          isLeader: () => leader.isLeader(),
          everyMs: storeConfig.leaseTtlSeconds * 1000,
          logger,
        });
        stoppers.push(async () => presence.close());
      }
      // The controller's node has a machine like any agent's: read before placement starts, kept current.
      const ownResources = await OwnNodeResources.start({
        registry,
        nodeId: controllerNodeId,
        refreshMs: ownNode.resourcesRefreshMs,
        nvidiaSmi: ownNode.nvidiaSmi,
        ...(ownNode.maxLayers === undefined ? {} : { maxLayers: ownNode.maxLayers }),
        logger,
      });
      stoppers.push(() => ownResources.close());
      const loads = new NodeLoads();
      const ownMetrics = new OwnNodeMetrics({
        history: metricsHistory,
        nodeId: controllerNodeId,
        intervalMs: metricsSettings.intervalMs,
        sample: createMetricsSampler({ nvidiaSmi: ownNode.nvidiaSmi }),
        nodeIds: async () => new Set((await registry.list()).nodes.map((node) => node.id)),
        logger,
        loads,
      });
      stoppers.push(() => ownMetrics.close());
      const models = new ModelRegistry(store, clock, registry);
      // Re-places model layers when nodes go down, leave or are drained (the leader's job; one controller today).
      const placement = new PlacementReconciler({
        models: leaderStore === store ? models : new ModelRegistry(leaderStore, clock, registry),
        feed,
        logger,
        loads,
        isLeader: () => leader.isLeader(),
      });
      placement.start();
      stoppers.push(() => placement.close());

      const agents = new AgentDialer(registry, ca, controllerNodeId);
      const controllerAddresses =
        controllers === undefined
          ? undefined
          : liveControllerAddresses(
              () => controllers.list(),
              parseDuration(defaults.ha.controllersRefresh),
              clock,
            );
      // Started now, so the first heartbeat answer and the first replication already have the list.
      controllerAddresses?.();
      // Several controllers: metrics and heartbeat loads heard here reach the others (and theirs, here).
      const peers =
        controllerAddresses === undefined
          ? undefined
          : new PeerReplicator({
              name: config.nodeName,
              address: advertiseAddress,
              peers: controllerAddresses,
              client: (address) => agents.clientAt(ControllerPeerService, address),
              everyMs: parseDuration(defaults.ha.replicateEvery),
              maxSamples: defaults.ha.replicateMaxSamples,
              maxCallBytes: defaults.ha.replicateMaxCallBytes,
              callTimeoutMs: parseDuration(defaults.ha.replicateTimeout),
              logger,
            });
      if (peers !== undefined) {
        peers.start();
        stoppers.push(() => peers.close());
      }
      const provisioning = new ProvisioningDispatcher({
        store,
        registry,
        clock,
        logger,
        clusterId,
        controllerNodeId,
        plans: new PlanLibrary([
          { path: shippedPlansDir, label: "shipped" },
          { path: config.provisioning.plansDir, label: "operator" },
        ]),
        remote: agentStepRunner(agents),
        local: localStepRunner(ledger),
        concurrency: config.provisioning.concurrency,
      });
      await provisioning.start({ recover: leader.isLeader() });
      stoppers.push(() => provisioning.close());
      const nodeHealth = new NodeHealthBook(store, clock);
      const clusters = new ClusterManager({
        store,
        registry,
        health: nodeHealth,
        engine: provisioning,
        clock,
        logger,
      });
      if (leader.isLeader()) await clusters.start();
      // Before the dispatcher closes: a rollout stops waiting on jobs the dispatcher is about to cut off.
      stoppers.push(() => clusters.close());
      // A controller that comes to lead catches up on the leader work it skipped while it did not.
      let recovered = leader.isLeader();
      const stopFollowingLeader = leader.onChange((leading) => {
        if (!leading) return;
        membership
          .resync()
          .catch((error: unknown) =>
            logger.warn({ err: error }, "could not read node statuses on taking the lead"),
          );
        placement.schedule();
        if (recovered) return;
        recovered = true;
        provisioning
          .recoverInterrupted()
          .catch((error: unknown) => logger.warn({ err: error }, "could not recover provisioning jobs"));
        clusters
          .start()
          .catch((error: unknown) => logger.warn({ err: error }, "could not recover cluster rollouts"));
      });
      stoppers.push(async () => stopFollowingLeader());

      const stopping = new AbortController();
      const context: FaceContext = {
        stopping: stopping.signal,
        ...(peers === undefined ? {} : { peers }),
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
          storeKind:
            storeConfig.kind === "etcd"
              ? `etcd (${storeConfig.endpoints.join(", ")}, prefix ${storeConfig.prefix})`
              : `sqlite (${storeConfig.path})`,
          isLeader: () => leader.isLeader(),
          leader: () => leader.leader(),
          ...(controllers === undefined ? {} : { controllers: () => controllers.list() }),
          ...(controllerAddresses === undefined ? {} : { controllerAddresses }),
          ...(etcd !== undefined
            ? { storeHealth: () => etcd.health() }
            : store instanceof SqliteStore
              ? { storeHealth: () => store.health() }
              : {}),
        },
        admission: new Admission({
          registry,
          tokens,
          requests: joinRequests,
          ca,
          nodeCertificateLifetimeMs: config.nodeCertificateLifetimeMs,
          requestTimeoutMs: config.authenticationByRequestTimeoutMs,
        }),
        heartbeats: membership,
        agents,
        localNodeAgent: localNode.impl,
        localHardware: localNode.hardwareImpl,
        health: nodeHealth,
        localPipelines: localPipelinesService(localPipelines),
        localLogging: localLoggingService({ appLog: logRing, pipelines: localPipelines }),
        localPipelineRuns: localPipelineRunsService(localPipelines),
        joinRequests,
        tokens,
        ca,
        resolver,
        audit,
        joinRequestTimeoutMs: config.authenticationByRequestTimeoutMs,
        provisioning,
        models,
        loads,
        ownLoad: createLoadReader(),
        metrics: { history: metricsHistory, intervalMs: metricsSettings.intervalMs },
        clusters,
      };
      const health: HealthRegistry[] = [];
      for (const server of [cluster, bridge]) {
        for (const { service, impl } of grpcServices(context)) server.add(service, impl);
        mountReflection(server);
        const registryOfServer = mountHealth(server);
        for (const service of server.services) registryOfServer.set(service.typeName, ServingStatus.SERVING);
        health.push(registryOfServer);
      }

      const housekeeping = setInterval(() => {
        if (!leader.isLeader()) return;
        void Promise.all([joinRequests.prune(), audit.prune()]).catch((error: unknown) =>
          logger.warn({ err: error }, "housekeeping failed"),
        );
      }, 60_000);
      housekeeping.unref();
      stoppers.push(async () => clearInterval(housekeeping));

      const draining = { value: false };
      const web = await WebListener.start({
        address: config.webAddress,
        routes: (router: ConnectRouter) => {
          for (const { service, impl } of browserServices(context)) {
            addConnectService(
              router,
              service,
              impl,
              authorization("web"),
              (error, method) =>
                logger.error({ method, err: error }, "fault answering a call; answered INTERNAL"),
              streamLimits,
            );
          }
        },
        metrics,
        isHealthy: () => !draining.value,
        tls: tls.current(),
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
        adminCredentialsDir,
        web,
        servers: [cluster, bridge],
        health,
        stoppers,
        logger,
        graceMs: config.shutdownGraceMs,
        draining,
        stopping,
      });
      logger.info(
        { ...controller.addresses, clusterId, caFingerprint: ca.fingerprint },
        "controller started",
      );
      return controller;
    } catch (error) {
      for (const stop of stoppers.reverse()) await stop().catch(() => undefined);
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
    for (const stop of [...this.#stoppers].reverse()) await stop();
    this.#logger.info("controller stopped");
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.close();
  }
}

/** The entries that are set: optional settings pass on as absent, not as undefined. */
function pickDefined<T extends Record<string, unknown>>(values: T): Partial<T> {
  return Object.fromEntries(Object.entries(values).filter(([, v]) => v !== undefined)) as Partial<T>;
}
