import type { HandlerContext, ServiceImpl } from "@connectrpc/connect";
import { PipelinesService } from "../../gen/pipelines_pb.ts";
import type { ControllerLink } from "../controller-link.ts";
import { forwardToController } from "../local-api/forward-service.ts";

type AnyHandler = (request: unknown, ctx: HandlerContext) => unknown;

/**
 * PipelinesService on an agent's local API: a call for this node runs here; a call for any other
 * node goes to the controller (with this node's identity), which routes it to the owning node.
 */
export function routingPipelinesService(
  ownNodeId: () => string,
  local: Partial<ServiceImpl<typeof PipelinesService>>,
  link: ControllerLink,
): Partial<ServiceImpl<typeof PipelinesService>> {
  const remote = forwardToController(PipelinesService, link) as Record<string, AnyHandler>;
  const here = local as Record<string, AnyHandler | undefined>;
  const impl: Record<string, AnyHandler> = {};
  const isHere = (request: unknown) => {
    const nodeId = ((request as { nodeId?: string }).nodeId ?? "").trim();
    return nodeId === ownNodeId();
  };
  for (const method of PipelinesService.methods) {
    const localHandler = here[method.localName]?.bind(local);
    const remoteHandler = remote[method.localName];
    if (localHandler === undefined || remoteHandler === undefined) continue;
    impl[method.localName] =
      method.methodKind === "server_streaming"
        ? async function* (request, ctx) {
            yield* (isHere(request) ? localHandler : remoteHandler)(request, ctx) as AsyncIterable<unknown>;
          }
        : (request, ctx) => (isHere(request) ? localHandler : remoteHandler)(request, ctx);
  }
  return impl as Partial<ServiceImpl<typeof PipelinesService>>;
}
