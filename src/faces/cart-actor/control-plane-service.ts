import type { ServiceImpl } from "@connectrpc/connect";
import type { ControlPlane } from "../../gen/control_plane_pb.ts";
import type { FaceContext } from "../face-context.ts";
import { callerOf } from "./caller.ts";
import { negotiate } from "./negotiate.ts";
import { readyOwnership, startOwnership } from "./ownership-of.ts";

/**
 * go-cart-actor's messages.ControlPlane on the controller, over the cluster's ownership directory. The
 * controller is a member too (its node, by its advertised host:port): GetCartIds lists the keys it owns.
 * Refusals of ConfirmOwner and Closing are `accepted: false` with the reason, as the seed's ack says.
 */
export function cartActorControlPlane(context: FaceContext): Partial<ServiceImpl<typeof ControlPlane>> {
  startOwnership(context);
  const { facts, clock } = context;
  return {
    ping() {
      return { host: facts.advertiseAddress, unixTime: BigInt(Math.floor(clock.now() / 1000)) };
    },

    async negotiate(request, ctx) {
      const ownership = await readyOwnership(context);
      const outcome = await negotiate(
        context,
        ownership,
        request.knownHosts,
        facts.advertiseAddress,
        ctx.signal,
      );
      return { hosts: outcome.hosts };
    },

    async getCartIds() {
      const ownership = await readyOwnership(context);
      return { cartIds: ownership.directory.keysOf(facts.controllerNodeId) };
    },

    async confirmOwner(request, ctx) {
      const ownership = await readyOwnership(context);
      return ownership.confirmOwner(request.cartId, request.newHost, callerOf(ctx, context));
    },

    async closing(request, ctx) {
      const ownership = await readyOwnership(context);
      return ownership.closing(request.host, callerOf(ctx, context));
    },
  };
}
