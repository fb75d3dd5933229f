import type { ServiceImpl } from "@connectrpc/connect";
import type { OwnershipFollower as Ownership } from "../../engines/ownership-follower.ts";
import type { ControlPlane } from "../../gen/control_plane_pb.ts";
import type { ClusterFacts } from "../face-context.ts";
import { callerOf } from "./caller.ts";
import { type NegotiateDeps, negotiate } from "./negotiate.ts";

/**
 * go-cart-actor's messages.ControlPlane on the controller, over the cluster's ownership directory. The
 * controller is a member too (its node, by its advertised host:port): GetCartIds lists the keys it owns.
 * Refusals of ConfirmOwner and Closing are `accepted: false` with the reason, as the seed's ack says.
 */
export interface CartActorControlPlaneDeps extends NegotiateDeps {
  readonly ownership: Ownership;
  readonly facts: Pick<ClusterFacts, "advertiseAddress" | "controllerNodeId">;
}

export function cartActorControlPlane(
  deps: CartActorControlPlaneDeps,
): Partial<ServiceImpl<typeof ControlPlane>> {
  const { ownership, facts, clock } = deps;
  return {
    ping() {
      return { host: facts.advertiseAddress, unixTime: BigInt(Math.floor(clock.now() / 1000)) };
    },

    async negotiate(request, ctx) {
      await ownership.start();
      const outcome = await negotiate(
        deps,
        ownership,
        request.knownHosts,
        facts.advertiseAddress,
        ctx.signal,
      );
      return { hosts: outcome.hosts };
    },

    async getCartIds() {
      await ownership.start();
      return { cartIds: ownership.directory.keysOf(facts.controllerNodeId) };
    },

    async confirmOwner(request, ctx) {
      await ownership.start();
      return ownership.confirmOwner(request.cartId, request.newHost, callerOf(ctx, facts.controllerNodeId));
    },

    async closing(request, ctx) {
      await ownership.start();
      return ownership.closing(request.host, callerOf(ctx, facts.controllerNodeId));
    },
  };
}
