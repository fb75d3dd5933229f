import { createLoadReader } from "../agent/machine/machine-sampler.ts";
import { localLoggingService } from "../agent/services/logging-service.ts";
import { localPipelineRunsService } from "../agent/services/pipeline-runs-service.ts";
import { localPipelinesService } from "../agent/services/pipelines-service.ts";
import type { Clock } from "../base/clock.ts";
import { DeviceRegistry } from "../core/devices/device-registry.ts";
import type { FaceContext } from "../faces/face-context.ts";
import type { AgentLogRing } from "../host/logs/ring-log-source.ts";
import { Admission } from "../security/admission.ts";
import { CertificateBook } from "../security/certificate-book.ts";
import { SqliteStore } from "../store/sqlite/sqlite-store.ts";
import { corralVersion } from "../version.ts";
import type { Core } from "./assemble-core.ts";
import type { Engines } from "./assemble-engines.ts";
import type { JoinLine } from "./assemble-install.ts";
import type { OwnNode } from "./assemble-own-node.ts";
import type { Security } from "./assemble-security.ts";
import type { Storage } from "./assemble-store.ts";
import type { ControllerConfig } from "./config.ts";

export interface FaceInputs {
  readonly config: ControllerConfig;
  readonly storage: Storage;
  readonly core: Core;
  readonly security: Security;
  readonly own: OwnNode;
  readonly engines: Engines;
  readonly clusterId: string;
  readonly advertiseAddress: string;
  readonly clock: Clock;
  readonly logRing: AgentLogRing;
  /** Aborted once the listeners refuse new calls: long-lived streams end so their clients go elsewhere. */
  readonly stopping: AbortSignal;
  /** The one-line join `corral token create` prints, once the web listener is up. */
  readonly joinLine: JoinLine;
}

/** What the faces are given: the one place the controller's parts are handed to the APIs it serves. */
export function assembleFaceContext(inputs: FaceInputs): FaceContext {
  const { config, storage, core, security, own, engines, clock } = inputs;
  const { store, etcd, leader } = storage;
  const { registry, joinRequests, tokens } = core;
  const { ca, resolver } = security;
  const { controllers, controllerAddresses, peers } = engines;
  const storeConfig = config.store;
  return {
    stopping: inputs.stopping,
    installCommand: () => inputs.joinLine.command(),
    ...(peers === undefined ? {} : { peers }),
    registry,
    feed: core.feed,
    store,
    clock,
    facts: {
      clusterId: inputs.clusterId,
      controllerNodeId: own.controllerNodeId,
      controllerName: config.nodeName,
      advertiseAddress: inputs.advertiseAddress,
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
    heartbeats: engines.membership,
    agents: own.agents,
    localNodeAgent: own.localNode.impl,
    localHardware: own.localNode.hardwareImpl,
    health: core.nodeHealth,
    localPipelines: localPipelinesService(own.localPipelines),
    localLogging: localLoggingService({ appLog: inputs.logRing, pipelines: own.localPipelines }),
    localPipelineRuns: localPipelineRunsService(own.localPipelines),
    joinRequests,
    tokens,
    ca,
    resolver,
    audit: core.audit,
    joinRequestTimeoutMs: config.authenticationByRequestTimeoutMs,
    provisioning: engines.provisioning,
    models: core.models,
    loads: core.loads,
    ownLoad: createLoadReader({ machine: own.machine }),
    metrics: { history: core.metricsHistory, intervalMs: core.metricsSettings.intervalMs },
    clusters: engines.clusters,
    ownership: engines.ownership,
    certificates: new CertificateBook({ ca, clock }),
    devices: new DeviceRegistry(store, clock),
  };
}
