import { networkInterfaces } from "node:os";
import { resolve } from "node:path";
import type { PeerCertificate } from "node:tls";
import { ServerCredentials } from "@grpc/grpc-js";
import { formatHostPort, isLoopbackHost, parseHostPort } from "../base/address.ts";
import { parseDuration } from "../base/duration.ts";
import { CorralError } from "../base/errors.ts";
import { parseToken } from "../core/admission/tokens.ts";
import type { NodeService } from "../core/nodes/node.ts";
import { defaults } from "../defaults.ts";
import { ControlPlane as CartControlPlane } from "../gen/control_plane_pb.ts";
import { HardwareService } from "../gen/corral/v1/hardware_pb.ts";
import { MembersService } from "../gen/corral/v1/members_pb.ts";
import { MetricsService } from "../gen/corral/v1/metrics_pb.ts";
import { PipelineRunsService } from "../gen/corral/v1/pipelines_pb.ts";
import { ProvisioningAgentService } from "../gen/corral/v1/provisioning_pb.ts";
import { HubClientService } from "../gen/hub_client_pb.ts";
import { HubServerService } from "../gen/hub_server_pb.ts";
import { LoggingService } from "../gen/logging_pb.ts";
import {
  DiscoveryService as DllmDiscoveryService,
  NodeService as DllmNodeService,
  TUIService as DllmTuiService,
} from "../gen/node_pb.ts";
import { NodeAgent } from "../gen/picontroller_pb.ts";
import { PipelinesService } from "../gen/pipelines_pb.ts";
import { AgentLogRing } from "../host/logs/ring-log-source.ts";
import { ProcessLedger } from "../host/process-ledger.ts";
import { resolveRunAs } from "../host/run-as.ts";
import type { Logger } from "../observability/logger.ts";
import { PipelineManager } from "../pipelines/manager.ts";
import { processPolicy } from "../pipelines/process-policy.ts";
import { ServingStatus } from "../rpc/health/health-registry.ts";
import { mountHealth } from "../rpc/health/health-service.ts";
import { observeCalls } from "../rpc/interceptors.ts";
import { mountReflection } from "../rpc/reflection/reflection-service.ts";
import { RpcServer } from "../rpc/rpc-server.ts";
import { securePrivateDir } from "../security/private-dir.ts";
import { RotatingCertificates, requiredClientCertificateCredentials } from "../security/tls-credentials.ts";
import { corralVersion } from "../version.ts";
import { AccessView, notYetChecked } from "./access-view.ts";
import { TrustRefresher } from "./ca-trust-refresh.ts";
import { agentListenerAccess } from "./cluster-access.ts";
import { ControllerLink } from "./controller-link.ts";
import { IdentityStore, type NodeIdentity } from "./identity-store.ts";
import { localApiGuard } from "./local-api/edge-checks.ts";
import { forwardToController } from "./local-api/forward-service.ts";
import { agentHubClientService } from "./local-api/hub-client-service.ts";
import { forwardingHubServerService } from "./local-api/hub-server-service.ts";
import { createLoadReader, MachineSampler } from "./machine/machine-sampler.ts";
import { readSystemResources } from "./machine/system-resources.ts";
import { createMetricsSampler, MetricsPusher } from "./metrics-pusher.ts";
import { routeByNodeId, routingPipelinesService } from "./pipelines/agent-pipelines.ts";
import { controllerUdpResolver } from "./pipelines/udp-target-resolver.ts";
import { provisioningAgentService } from "./provisioning/provisioning-agent-service.ts";
import { agentCartControlPlane, forwardingMembersService } from "./services/cart-actor-control-plane.ts";
import { localLoggingService } from "./services/logging-service.ts";
import { createNodeAgent } from "./services/node-agent/node-agent.ts";
import { localPipelineRunsService } from "./services/pipeline-runs-service.ts";
import { localPipelinesService } from "./services/pipelines-service.ts";

export interface AgentOptions {
  /** The local API (NanoPing's `np up --grpc`): plaintext, loopback unless `insecure`. */
  readonly localApiAddress: string;
  /** The agent's mTLS listener for calls from the controller. */
  readonly listenAddress: string;
  /** host the controller should dial; defaults to the listen host, or this machine's first address. */
  readonly advertiseHost?: string;
  readonly dataDir: string;
  readonly join?: string;
  readonly token?: string;
  readonly caFingerprint?: string;
  readonly name?: string;
  readonly labels?: Record<string, string>;
  readonly insecure?: boolean;
  /** Where the agent's own log lines are kept for StreamLogs (fed by the logger's tee). */
  readonly logRing?: AgentLogRing;
  /** How often the agent checks the cluster's trust bundle and whether to renew (default 1m). */
  readonly trustRefreshInterval?: string;
  /**
   * Programs (absolute paths) this node's pipeline `process` blocks may run (`--pipeline-allow`);
   * default none (defaults.pipelines.processAllow).
   */
  readonly pipelineProcessAllow?: readonly string[];
  /**
   * Who pipeline `process` blocks and provisioning `exec` steps run as: a user name or uid, "root", or
   * "auto" (the default: `nobody` when the agent is root, the agent's own user otherwise).
   */
  readonly runAs?: string;
  /** Who provisioning `exec` steps run as, when not `runAs` and the step does not ask for root. */
  readonly provisionAs?: string;
  /** false: provisioning `exec` steps that ask for root (`root: true` in the plan) are refused. */
  readonly rootSteps?: boolean;
}

/**
 * The services every agent offers its cluster (NanoPing's NodeService names): only ones it serves.
 * RESOURCES is not among them: NanoPing's resources API was never decoded (nanoping-wire.md), so
 * corral has nothing to serve under that name; a node's resources are in corral's and Distributed
 * LLM's APIs instead.
 */
const offeredServices: NodeService[] = ["LOGGING", "PIPELINES"];

/**
 * The agent on a node: its identity (data dir), its tie to the controller, its local API on loopback
 * and its mTLS listener. `start` brings it up; `close` stops it; the membership survives restarts.
 */
export class Agent implements AsyncDisposable {
  readonly link: ControllerLink;
  readonly identity: NodeIdentity;
  readonly localApiAddress: string;
  readonly listenAddress: string;
  /** The agent's own log lines, as StreamLogs serves them. */
  readonly logRing: AgentLogRing;
  readonly #servers: RpcServer[];
  readonly #closers: (() => Promise<void>)[];
  readonly #logger: Logger;

  private constructor(parts: {
    link: ControllerLink;
    identity: NodeIdentity;
    localApiAddress: string;
    listenAddress: string;
    servers: RpcServer[];
    closers: (() => Promise<void>)[];
    logger: Logger;
    logRing: AgentLogRing;
  }) {
    this.link = parts.link;
    this.identity = parts.identity;
    this.localApiAddress = parts.localApiAddress;
    this.listenAddress = parts.listenAddress;
    this.#servers = parts.servers;
    this.#closers = parts.closers;
    this.logRing = parts.logRing;
    this.#logger = parts.logger;
  }

  static async start(options: AgentOptions, logger: Logger): Promise<Agent> {
    const local = parseHostPort(options.localApiAddress, "--grpc");
    if (!options.insecure && !isLoopbackHost(local.host)) {
      throw CorralError.invalidArgument(
        "--grpc",
        `${options.localApiAddress} is not loopback; the local API is plaintext, so pass --insecure to expose it`,
      );
    }
    const listen = parseHostPort(options.listenAddress, "--listen");
    if (options.token !== undefined) parseToken(options.token);
    // Checked before anything starts: an agent that cannot drop privileges as configured does not run.
    const runAs = resolveRunAs(options.runAs ?? defaults.agent.runAs, "--run-as");
    const provisionAs =
      options.provisionAs === undefined ? runAs : resolveRunAs(options.provisionAs, "--provision-as");
    const dataDir = resolve(options.dataDir);
    await securePrivateDir(dataDir, (what) =>
      logger.warn(`data dir was readable by other users, tightened: ${what}`),
    );
    // What an earlier agent on this data dir left running (killed with -9, power to the agent only) is
    // killed before pipelines start again: otherwise a pipeline would run twice.
    const ledger = await ProcessLedger.open(resolve(dataDir, defaults.agent.processLedgerFile), {
      graceMs: parseDuration(defaults.agent.reapGrace),
      onReaped: (entry) =>
        logger.warn({ pgid: entry.pgid, what: entry.what }, "killed a process group left by the last agent"),
      onWriteError: (error) =>
        logger.warn({ error: error.message }, "could not update the ledger of process groups"),
    });
    const store = new IdentityStore(dataDir);
    const identity = await store.loadOrCreate(options.name);
    if (options.name !== undefined && options.name !== identity.name) {
      identity.name = options.name;
      await store.save(identity);
    }

    const servers: RpcServer[] = [];
    const closers: (() => Promise<void>)[] = [];
    try {
      const clusterTls = new RotatingCertificates();
      // Callers of the listener are checked against the controller's lists, watched once the link is up.
      let access: AccessView | undefined;
      const callerChecks = {
        get synced() {
          return access?.synced ?? false;
        },
        resolve: (certificate: PeerCertificate) =>
          access === undefined ? Promise.reject(notYetChecked()) : access.resolve(certificate),
      };
      const cluster = new RpcServer({
        interceptors: [observeCalls(logger), agentListenerAccess(callerChecks)],
        logger,
      });
      servers.push(cluster);
      const listenPort = await cluster.listen(
        formatHostPort(listen),
        requiredClientCertificateCredentials(clusterTls),
      );
      const advertise = formatHostPort({
        host: options.advertiseHost ?? advertisedHost(listen.host),
        port: listenPort,
      });

      // One reading of the machine serves the heartbeat's load, the metrics pusher and NodeAgent calls.
      const machine = new MachineSampler({ onWarning: (message) => logger.warn(message) });
      const link = new ControllerLink({
        store,
        identity,
        logger,
        ...(options.caFingerprint === undefined ? {} : { caFingerprint: options.caFingerprint }),
        selfReport: async () => ({
          address: advertise,
          resources: await readSystemResources({ machine, onWarning: (message) => logger.warn(message) }),
          services: offeredServices,
          version: corralVersion,
          labels: options.labels ?? {},
        }),
        load: createLoadReader({ machine }),
        onCredentials: (credentials) =>
          clusterTls.update(credentials.caPem, credentials.certificatePem, credentials.privateKeyPem),
      });
      access = new AccessView({ link, logger });
      access.start();
      const accessView = access;
      closers.unshift(() => accessView.close());
      const logRing = options.logRing ?? new AgentLogRing();
      const nodeAgent = await createNodeAgent({
        dataDir,
        nodeId: () => identity.nodeId,
        controllerState: () => link.state.value,
        logger,
        logRing,
        machine,
      });
      closers.push(() => nodeAgent.close());
      cluster.add(NodeAgent, nodeAgent.impl);
      cluster.add(HardwareService, nodeAgent.hardwareImpl);
      const pipelines = await PipelineManager.open({
        dataDir: resolve(dataDir, "pipelines"),
        registerLogs: (run) => nodeAgent.logs.registerPipeline(run.id, run.logs),
        resolveUdpTarget: controllerUdpResolver(link),
        processPolicy: processPolicy(
          options.pipelineProcessAllow ?? defaults.pipelines.processAllow,
          "--pipeline-allow",
        ),
        runAs,
        recorder: ledger,
      });
      closers.unshift(() => pipelines.close());
      const localPipelines = localPipelinesService(pipelines);
      cluster.add(PipelinesService, localPipelines);
      const localLogging = localLoggingService({ appLog: logRing, pipelines });
      cluster.add(LoggingService, localLogging);
      const localPipelineRuns = localPipelineRunsService(pipelines);
      cluster.add(PipelineRunsService, localPipelineRuns);
      // go-cart-actor's ControlPlane: Ping here, the ownership directory's methods via the controller.
      const cart = agentCartControlPlane(link, () => advertise);
      cluster.add(CartControlPlane, cart);
      cluster.add(
        ProvisioningAgentService,
        provisioningAgentService(logger, {
          runAs: provisionAs,
          recorder: ledger,
          ...(options.rootSteps === undefined ? {} : { rootSteps: options.rootSteps }),
        }),
      );
      mountReflection(cluster);
      mountHealth(cluster);

      const localApi = new RpcServer({
        interceptors: [observeCalls(logger)],
        logger,
        requestGuard: localApiGuard,
      });
      servers.push(localApi);
      localApi.add(HubClientService, agentHubClientService({ link, store, services: () => offeredServices }));
      localApi.add(HubServerService, forwardingHubServerService(link));
      localApi.add(CartControlPlane, cart);
      localApi.add(NodeAgent, nodeAgent.impl);
      localApi.add(HardwareService, nodeAgent.hardwareImpl);
      for (const service of [DllmNodeService, DllmDiscoveryService, DllmTuiService]) {
        localApi.add(service, forwardToController(service, link));
      }
      localApi.add(MembersService, forwardingMembersService(link));
      localApi.add(
        PipelinesService,
        routingPipelinesService(() => identity.nodeId, localPipelines, link),
      );
      localApi.add(
        LoggingService,
        routeByNodeId(LoggingService, () => identity.nodeId, localLogging, link),
      );
      localApi.add(
        PipelineRunsService,
        routeByNodeId(PipelineRunsService, () => identity.nodeId, localPipelineRuns, link),
      );
      mountReflection(localApi);
      const health = mountHealth(localApi);
      for (const service of localApi.services) health.set(service.typeName, ServingStatus.SERVING);
      const localPort = await localApi.listen(formatHostPort(local), ServerCredentials.createInsecure());

      await link.start();
      const trust = new TrustRefresher({
        link,
        intervalMs: parseDuration(options.trustRefreshInterval ?? defaults.certificates.trustRefreshInterval),
        logger,
      });
      trust.start();
      closers.unshift(() => trust.close());
      const metricsPusher = new MetricsPusher({
        client: () => link.client(MetricsService),
        sample: createMetricsSampler({ machine }),
        logger,
      });
      metricsPusher.start();
      closers.unshift(() => metricsPusher.close());
      const agent = new Agent({
        link,
        identity,
        localApiAddress: formatHostPort({ host: local.host, port: localPort }),
        listenAddress: advertise,
        servers,
        closers,
        logger,
        logRing,
      });
      logger.info(
        { nodeId: identity.nodeId, name: identity.name, localApi: agent.localApiAddress, listen: advertise },
        "agent started",
      );
      return agent;
    } catch (error) {
      for (const server of servers) server.forceClose();
      for (const close of closers) await close().catch(() => undefined);
      throw error;
    }
  }

  /**
   * Joins the controller given on the command line (or the first of `a,b,c` that answers), unless the
   * data dir already holds a membership.
   * By token: at once. By request: waits for an operator (the local API keeps serving meanwhile).
   */
  async joinIfAsked(join: string | undefined, token: string | undefined, signal: AbortSignal): Promise<void> {
    if (join === undefined) return;
    // A node that has joined keeps its membership; a new list of controllers replaces the stored one.
    if (this.link.authenticated) return this.link.setControllerAddresses(join);
    await this.link.join(join, { ...(token === undefined ? {} : { token }), signal });
  }

  async close(graceMs = 5_000): Promise<void> {
    await this.link.close();
    await Promise.all(this.#servers.map((server) => server.close(graceMs)));
    for (const close of this.#closers) await close();
    this.#logger.info("agent stopped");
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.close();
  }
}

/** The address the controller should dial: the listen host, or this machine's first external IPv4. */
function advertisedHost(listenHost: string): string {
  if (listenHost !== "0.0.0.0" && listenHost !== "::") return listenHost;
  for (const addresses of Object.values(networkInterfaces())) {
    const external = addresses?.find((a) => a.family === "IPv4" && !a.internal);
    if (external !== undefined) return external.address;
  }
  return "127.0.0.1";
}
