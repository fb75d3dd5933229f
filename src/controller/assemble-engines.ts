import type { Clock } from "../base/clock.ts";
import { ClusterManager } from "../engines/cluster-manager.ts";
import { followLeadership, startHousekeeping } from "../engines/leader-duties.ts";
import { Membership } from "../engines/membership.ts";
import type { OwnershipFollower as Ownership } from "../engines/ownership-follower.ts";
import { PlacementReconciler } from "../engines/placement-reconciler.ts";
import { ProvisioningDispatcher } from "../engines/provisioning-dispatcher.ts";
import type { Logger } from "../observability/logger.ts";
import type { Core } from "./assemble-core.ts";
import { type PeerReplication, startControllerRegistry, startPeerReplication } from "./assemble-ha.ts";
import { type OwnNode, startOwnNodeUpkeep } from "./assemble-own-node.ts";
import type { Storage } from "./assemble-store.ts";
import type { ControllerConfig } from "./config.ts";
import type { ControllerRegistry } from "./controller-registry.ts";
import { startOwnership } from "./ownership-start.ts";
import { PlanLibrary, shippedPlansDir } from "./provisioning-plans.ts";
import { agentStepRunner, localStepRunner } from "./provisioning-runners.ts";
import { assemble, type Stack } from "./stack.ts";

/** The long-running domain processes, started and following the leadership. */
export interface Engines extends PeerReplication {
  readonly membership: Membership;
  readonly controllers: ControllerRegistry | undefined;
  readonly placement: PlacementReconciler;
  readonly provisioning: ProvisioningDispatcher;
  readonly clusters: ClusterManager;
  /** The ownership directory (go-cart-actor's ControlPlane, corral.v1.MembersService). */
  readonly ownership: Ownership;
  readonly stack: Stack;
}

export interface EngineInputs {
  readonly config: ControllerConfig;
  readonly storage: Storage;
  readonly core: Core;
  readonly own: OwnNode;
  readonly clusterId: string;
  readonly advertiseAddress: string;
  readonly clock: Clock;
  readonly logger: Logger;
}

/** Starts the engines in the order they lean on each other; they stop in the reverse order. */
export function assembleEngines(inputs: EngineInputs): Promise<Engines> {
  return assemble(async (stack) => {
    const { config, storage, core, own, clock, logger } = inputs;
    const { leader, store } = storage;
    const { registry, feed, loads } = core;
    const isLeader = () => leader.isLeader();
    const { controllerNodeId } = own;
    const membership = new Membership({
      registry,
      feed,
      clock,
      logger,
      controllerNodeId,
      isLeader,
      liveness: config.liveness,
      sweepRegistry: core.leaderRegistry,
    });
    await membership.start();
    stack.defer(() => membership.close());
    const controllers = await startControllerRegistry(stack, inputs, membership);
    await startOwnNodeUpkeep(stack, own, core, logger);
    // Re-places model layers when nodes go down, leave or are drained (the leader's job).
    const placement = new PlacementReconciler({ models: core.leaderModels, feed, logger, loads, isLeader });
    placement.start();
    stack.defer(() => placement.close());
    const replication = startPeerReplication(stack, inputs, controllers);
    const provisioning = new ProvisioningDispatcher({
      store,
      registry,
      clock,
      logger,
      clusterId: inputs.clusterId,
      controllerNodeId,
      plans: new PlanLibrary([
        { path: shippedPlansDir, label: "shipped" },
        { path: config.provisioning.plansDir, label: "operator" },
      ]),
      remote: agentStepRunner(own.agents),
      local: localStepRunner(own.ledger),
      concurrency: config.provisioning.concurrency,
    });
    await provisioning.start({ recover: leader.isLeader() });
    stack.defer(() => provisioning.close());
    const clusters = new ClusterManager({
      store,
      registry,
      health: core.nodeHealth,
      engine: provisioning,
      clock,
      logger,
    });
    if (leader.isLeader()) await clusters.start();
    // Before the dispatcher closes: a rollout stops waiting on jobs the dispatcher is about to cut off.
    stack.defer(() => clusters.close());
    const leadership = { leadership: leader, membership, placement, provisioning, clusters, logger };
    stack.defer(followLeadership(leadership));
    const books = [core.joinRequests, core.audit];
    stack.defer(startHousekeeping({ isLeader, books, everyMs: 60_000, logger }));
    const ownership = startOwnership({ store, registry, feed, clock, logger });
    stack.defer(() => ownership.close());
    return { membership, controllers, placement, provisioning, clusters, ownership, ...replication };
  });
}
