import type { Clock } from "../base/clock.ts";
import { parseDuration } from "../base/duration.ts";
import type { NodeRegistry } from "../core/nodes/node-registry.ts";
import { defaults } from "../defaults.ts";
import { LastSeenBatcher } from "../engines/last-seen-batcher.ts";
import type { Membership } from "../engines/membership.ts";
import { ControllerPeerService } from "../gen/corral/v1/peers_pb.ts";
import type { Logger } from "../observability/logger.ts";
import { corralVersion } from "../version.ts";
import type { AgentDialer } from "./agent-dialer.ts";
import type { Storage } from "./assemble-store.ts";
import type { ControllerConfig } from "./config.ts";
import { ControllerPresenceSweep } from "./controller-presence-sweep.ts";
import { ControllerRegistry } from "./controller-registry.ts";
import { liveControllerAddresses } from "./live-controller-addresses.ts";
import { PeerReplicator } from "./peer-replicator.ts";
import type { Stack } from "./stack.ts";

/** What the controllers of one cluster need to find and tell each other. */
export interface HaInputs {
  readonly config: ControllerConfig;
  readonly storage: Pick<Storage, "etcd" | "leader">;
  readonly core: { readonly registry: NodeRegistry; readonly leaderRegistry: NodeRegistry };
  readonly own: { readonly agents: Pick<AgentDialer, "clientAt"> };
  readonly advertiseAddress: string;
  readonly clock: Clock;
  readonly logger: Logger;
}

/**
 * Several controllers (an etcd store): each registers under its own lease and shares the heartbeats
 * it hears; the leader marks the nodes of controllers that are gone. Undefined with one controller.
 */
export async function startControllerRegistry(
  stack: Stack,
  inputs: HaInputs,
  membership: Membership,
): Promise<ControllerRegistry | undefined> {
  const { config, advertiseAddress, clock, logger } = inputs;
  const storeConfig = config.store;
  const { etcd, leader } = inputs.storage;
  if (etcd === undefined || storeConfig.kind !== "etcd") return undefined;
  const controllers = await ControllerRegistry.start({
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
  stack.defer(() => controllers.close());
  const batcher = new LastSeenBatcher({
    registry: controllers,
    membership,
    everyMs: storeConfig.lastSeenFlushMs,
    logger,
  });
  stack.defer(() => batcher.close());
  const presence = new ControllerPresenceSweep({
    controllers: () => controllers.list(),
    registry: inputs.core.registry,
    leaderRegistry: inputs.core.leaderRegistry,
    isLeader: () => leader.isLeader(),
    everyMs: storeConfig.leaseTtlSeconds * 1000,
    logger,
  });
  stack.defer(() => presence.close());
  return controllers;
}

export interface PeerReplication {
  /** The live controllers' addresses, refreshed now and then (told to agents in heartbeat answers). */
  readonly controllerAddresses?: () => readonly string[];
  /** Metrics and heartbeat loads heard here reach the other controllers (and theirs, here). */
  readonly peers?: PeerReplicator;
}

/** Several controllers: what each hears is shared with the others. Nothing with one controller. */
export function startPeerReplication(
  stack: Stack,
  inputs: HaInputs,
  controllers: ControllerRegistry | undefined,
): PeerReplication {
  if (controllers === undefined) return {};
  const { config, advertiseAddress, clock, logger } = inputs;
  const agents = inputs.own.agents;
  const controllerAddresses = liveControllerAddresses(
    () => controllers.list(),
    parseDuration(defaults.ha.controllersRefresh),
    clock,
  );
  // Started now, so the first heartbeat answer and the first replication already have the list.
  controllerAddresses();
  const peers = new PeerReplicator({
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
  peers.start();
  stack.defer(() => peers.close());
  return { controllerAddresses, peers };
}
