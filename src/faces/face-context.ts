import type { DescService } from "@bufbuild/protobuf";
import type { Client, ServiceImpl } from "@connectrpc/connect";
import type { Clock } from "../base/clock.ts";
import type { JoinRequestBook } from "../core/admission/join-requests.ts";
import type { TokenRegistry } from "../core/admission/tokens.ts";
import type { ClusterEngine } from "../core/clusters/cluster-engine.ts";
import type { DeviceRegistry } from "../core/devices/device-registry.ts";
import type { AuditLog } from "../core/events/audit-log.ts";
import type { EventFeed } from "../core/events/event-feed.ts";
import type { MetricsHistory, MetricsPoint } from "../core/metrics/metrics-history.ts";
import type { ModelRegistry } from "../core/models/model-registry.ts";
import type { NodeRecord } from "../core/nodes/node.ts";
import type { NodeHealthBook } from "../core/nodes/node-health.ts";
import type { NodeLoad, NodeLoads } from "../core/nodes/node-load.ts";
import type { NodeRegistry } from "../core/nodes/node-registry.ts";
import type { ProvisioningEngine } from "../core/provisioning/provisioning-engine.ts";
import type { OwnershipFollower as Ownership } from "../engines/ownership-follower.ts";
import type { HardwareService } from "../gen/corral/v1/hardware_pb.ts";
import type { PipelineRunsService } from "../gen/corral/v1/pipelines_pb.ts";
import type { LoggingService } from "../gen/logging_pb.ts";
import type { NodeAgent } from "../gen/picontroller_pb.ts";
import type { PipelinesService } from "../gen/pipelines_pb.ts";
import type { Admission } from "../security/admission.ts";
import type { CertificateAuthority } from "../security/certificate-authority.ts";
import type { CertificateBook } from "../security/certificate-book.ts";
import type { PrincipalResolver } from "../security/principal-resolver.ts";
import type { Store } from "../store/store.ts";

/** Facts about the running controller that several faces report. */
export interface ClusterFacts {
  readonly clusterId: string;
  readonly controllerNodeId: string;
  readonly controllerName: string;
  /** host:port other members use to reach this controller (go-cart-actor's `host`). */
  readonly advertiseAddress: string;
  readonly version: string;
  readonly startedAt: number;
  readonly storeKind: string;
  /** Whether this controller leads (runs the once-only work); absent means it always does. */
  readonly isLeader?: () => boolean;
  /** The leading controller's name, when known. */
  readonly leader?: () => string | undefined;
  /** Every controller alive now (several controllers on etcd); absent: this one alone. */
  readonly controllers?: () => Promise<ControllerView[]>;
  /** The live controllers' cluster addresses as last read (refreshed in the background; cheap to call). */
  readonly controllerAddresses?: () => readonly string[];
  /** The store's health as this controller sees it; absent: healthy whenever it answers. */
  readonly storeHealth?: () => Promise<StoreHealthView>;
}

export interface ControllerView {
  readonly name: string;
  readonly clusterAddress: string;
  readonly version: string;
  readonly startedAt: number;
}

export interface StoreHealthView {
  readonly healthy: boolean;
  readonly message: string;
  readonly revision: number;
  readonly dbSizeBytes: number;
}

/** Reaching a node's agent (the controller dials it over mTLS). */
export interface AgentReach {
  resolve(nodeIdOrName: string): Promise<NodeRecord>;
  client<S extends DescService>(service: S, node: NodeRecord): Promise<Client<S>>;
}

/** Liveness as faces see it: a node says it is alive and learns when to say it again. */
export interface Heartbeats {
  heartbeat(nodeId: string): Promise<number>;
  nextInterval(): number;
  /** A heartbeat stream opened; `end(goodbye)` when it ends (see Membership.openStream). */
  openStream?(nodeId: string): { end(goodbye: boolean): void };
}

/**
 * Everything the controller hands its faces, as one object (the service table passes it on; tests read
 * it as `controller.context`). No face takes it whole: each declares the slice it touches
 * (`NodesServiceDeps`, `RelayDeps`, …), which this object satisfies; `test/architecture/sizes.test.ts`
 * keeps it so. Faces translate; rules live in core, engines and security.
 */
export interface FaceContext {
  readonly registry: NodeRegistry;
  readonly feed: EventFeed;
  readonly store: Store;
  readonly clock: Clock;
  readonly facts: ClusterFacts;
  readonly admission: Admission;
  readonly heartbeats: Heartbeats;
  readonly agents: AgentReach;
  /** The controller's own node's Pi-Controller NodeAgent (the controller is a node too). */
  readonly localNodeAgent: Partial<ServiceImpl<typeof NodeAgent>>;
  /** The controller's own node's corral.v1.HardwareService (GPIO, PWM, SPI, I²C, analog). */
  readonly localHardware?: Partial<ServiceImpl<typeof HardwareService>>;
  /** The latest health report of every node (Pi-Controller's ReportHealth). */
  readonly health: NodeHealthBook;
  /** The controller's own node's NanoPing PipelinesService (runs its pipelines here). */
  readonly localPipelines?: Partial<ServiceImpl<typeof PipelinesService>>;
  /** The controller's own node's NanoPing LoggingService (its own log and its pipeline runs' logs). */
  readonly localLogging?: Partial<ServiceImpl<typeof LoggingService>>;
  /** The controller's own node's corral.v1.PipelineRunsService (run state of its pipelines). */
  readonly localPipelineRuns?: Partial<ServiceImpl<typeof PipelineRunsService>>;
  readonly joinRequests: JoinRequestBook;
  readonly tokens: TokenRegistry;
  readonly ca: CertificateAuthority;
  /** The certificate rules over the CA's inventory (current, untrusted, renewal, revocation). */
  readonly certificates: CertificateBook;
  readonly resolver: PrincipalResolver;
  readonly audit: AuditLog;
  /** The controller's `hubServer.authenticationByRequest.timeout`. */
  readonly joinRequestTimeoutMs: number;
  /** Provisioning plans and jobs (the controller's dispatcher). */
  readonly provisioning: ProvisioningEngine;
  /** Models and where their layers are placed (Distributed LLM, `corral models`). */
  readonly models: ModelRegistry;
  /** The latest load each node sent with its heartbeat. */
  readonly loads: NodeLoads;
  /** The controller machine's own load (CPU percent, memory in use), for its own node's metrics. */
  readonly ownLoad: () => Promise<{ cpuUsage: number; memoryUsedMb: number }>;
  /** Agent metrics history (in memory) and how often agents push (`metrics.interval`). */
  readonly metrics: { readonly history: MetricsHistory; readonly intervalMs: number };
  /** Clusters of nodes with a k3s lifecycle (`corral cluster`). */
  readonly clusters: ClusterEngine;
  /** Named devices on the nodes (corral.v1.DevicesService). */
  readonly devices: DeviceRegistry;
  /** The ownership directory (go-cart-actor's ControlPlane, corral.v1.MembersService). */
  readonly ownership: Ownership;
  /**
   * Aborted when the controller starts to drain: streams a client simply opens again elsewhere
   * (heartbeats) end at once instead of holding the shutdown for its whole grace period.
   */
  readonly stopping?: AbortSignal;
  /** With several controllers: what this one heard from agents, passed on to the others. */
  readonly peers?: PeerFeed;
  /** The one-line join up to `| sh -s -- --token …` (`curl … /install.sh`), once the web listener is up. */
  readonly installCommand?: () => string | undefined;
}

/** What agents told this controller that the store does not keep, for the other controllers. */
export interface PeerFeed {
  samples(nodeId: string, points: readonly MetricsPoint[]): void;
  load(nodeId: string, load: NodeLoad): void;
}
