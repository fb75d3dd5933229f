import type { DescService } from "@bufbuild/protobuf";
import type { Client, ServiceImpl } from "@connectrpc/connect";
import { ErrorCode } from "../../base/errors.ts";
import { ControlPlane } from "../../gen/control_plane_pb.ts";
import { MembersService } from "../../gen/corral/v1/members_pb.ts";
import { fromConnectError } from "../../rpc/connect-errors.ts";
import { memberIdOf, onlyForItself, ownerIdOf, peerNodeOf } from "./cart-actor-peer-caller.ts";

/** What an agent offers for calling its controller (its ControllerLink): typed clients with its identity. */
export interface ControllerCalls {
  client<S extends DescService>(service: S): Client<S>;
  readonly identity: { readonly nodeId: string };
}

const rethrow = (error: unknown): never => {
  throw fromConnectError(error);
};

/**
 * go-cart-actor's messages.ControlPlane on an agent. Ping is answered here, with the agent's own
 * advertised host. The rest concern the cluster's one ownership directory, so the agent passes them to
 * its controller with its own identity (the controller's access rules apply; a node acts for itself):
 * GetCartIds becomes MembersService/ListKeys for this node, so it lists the keys this member owns;
 * Negotiate's answer always includes this host (the callee); ConfirmOwner and Closing go as they are, so
 * a transfer handed over through an agent comes from that agent's member. Another node calling them on
 * this agent's listener speaks only for itself: it may not announce this node's closing nor hand over
 * keys this node owns (both would pass on with this node's identity), and its own closing is the
 * controller's to hear, not this node's to pass on.
 */
export function agentCartControlPlane(
  link: ControllerCalls,
  advertise: () => string,
): Partial<ServiceImpl<typeof ControlPlane>> {
  return {
    ping() {
      return { host: advertise(), unixTime: BigInt(Math.floor(Date.now() / 1000)) };
    },

    async negotiate(request, ctx) {
      const reply = await link.client(ControlPlane).negotiate(request, { signal: ctx.signal }).catch(rethrow);
      const self = advertise();
      return { hosts: reply.hosts.includes(self) ? reply.hosts : [...reply.hosts, self].sort() };
    },

    async getCartIds(_request, ctx) {
      try {
        const reply = await link
          .client(MembersService)
          .listKeys({ member: link.identity.nodeId }, { signal: ctx.signal });
        return { cartIds: reply.keys };
      } catch (error) {
        const corral = fromConnectError(error);
        // Not a member (yet): it owns nothing.
        if (corral.code === ErrorCode.NotFound) return { cartIds: [] };
        throw corral;
      }
    },

    async confirmOwner(request, ctx) {
      const self = link.identity.nodeId;
      const peer = peerNodeOf(ctx, self);
      // The controller lets this node hand over what it owns; a peer asking here must not get that.
      if (
        peer !== undefined &&
        (await ownerIdOf(link.client(MembersService), request.cartId, ctx.signal)) === self
      )
        throw onlyForItself(peer, "not hand over a key this node owns; only its owner hands a key over");
      return link.client(ControlPlane).confirmOwner(request, { signal: ctx.signal }).catch(rethrow);
    },

    async closing(request, ctx) {
      const peer = peerNodeOf(ctx, link.identity.nodeId);
      if (peer !== undefined) {
        const member = await memberIdOf(link.client(MembersService), request.host, ctx.signal);
        if (member !== peer) throw onlyForItself(peer, "announce only its own closing, not another member's");
        // Passed on, it would go with this node's identity, which may drain only this node.
        return {
          accepted: false,
          message: `noted; node ${peer} drains when it announces its closing to a controller or through its own agent`,
        };
      }
      return link.client(ControlPlane).closing(request, { signal: ctx.signal }).catch(rethrow);
    },
  };
}

/**
 * corral.v1.MembersService on an agent's local API, passed to the controller with the agent's identity:
 * an actor host on the node reads the directory, claims and releases keys for this node, and watches
 * membership through its own agent, without credentials of its own.
 */
export function forwardingMembersService(link: ControllerCalls): Partial<ServiceImpl<typeof MembersService>> {
  const members = () => link.client(MembersService);
  return {
    listMembers: async (request, ctx) =>
      members().listMembers(request, { signal: ctx.signal }).catch(rethrow),
    resolveOwner: async (request, ctx) =>
      members().resolveOwner(request, { signal: ctx.signal }).catch(rethrow),
    listKeys: async (request, ctx) => members().listKeys(request, { signal: ctx.signal }).catch(rethrow),
    registerKeys: async (request, ctx) =>
      members().registerKeys(request, { signal: ctx.signal }).catch(rethrow),
    claim: async (request, ctx) => members().claim(request, { signal: ctx.signal }).catch(rethrow),
    release: async (request, ctx) => members().release(request, { signal: ctx.signal }).catch(rethrow),
    drain: async (request, ctx) => members().drain(request, { signal: ctx.signal }).catch(rethrow),
    setWeight: async (request, ctx) => members().setWeight(request, { signal: ctx.signal }).catch(rethrow),
    async *watchMembers(request, ctx) {
      try {
        // The link's clients have a 15 s deadline for unary calls; a watch lasts as long as its caller.
        yield* members().watchMembers(request, { signal: ctx.signal, timeoutMs: 0 });
      } catch (error) {
        rethrow(error);
      }
    },
  };
}
