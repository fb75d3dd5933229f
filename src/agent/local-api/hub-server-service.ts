import type { ServiceImpl } from "@connectrpc/connect";
import { HubServerService } from "../../gen/hub_server_pb.ts";
import { fromConnectError } from "../../rpc/connect-errors.ts";
import type { ControllerLink } from "../controller-link.ts";

/**
 * NanoPing's hub server API on a node: "the Hub Server is accessible from every node". The node passes
 * each call on to its controller with its own identity, so the controller's access rules still apply.
 */
export function forwardingHubServerService(
  link: ControllerLink,
): Partial<ServiceImpl<typeof HubServerService>> {
  const hub = () => link.client(HubServerService);
  const rethrow = (error: unknown): never => {
    throw fromConnectError(error);
  };
  return {
    getNodes(request, ctx) {
      return hub().getNodes(request, { signal: ctx.signal }).catch(rethrow);
    },
    removeNode(request, ctx) {
      return hub().removeNode(request, { signal: ctx.signal }).catch(rethrow);
    },
    async *streamNodes(request, ctx) {
      try {
        yield* hub().streamNodes(request, { signal: ctx.signal });
      } catch (error) {
        rethrow(error);
      }
    },
    async *authenticationByRequests(answers, ctx) {
      try {
        yield* hub().authenticationByRequests(answers, { signal: ctx.signal });
      } catch (error) {
        rethrow(error);
      }
    },
  };
}
