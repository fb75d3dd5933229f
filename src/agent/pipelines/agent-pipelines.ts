import type { DescService } from "@bufbuild/protobuf";
import type { HandlerContext, ServiceImpl } from "@connectrpc/connect";
import { PipelinesService } from "../../gen/pipelines_pb.ts";
import type { ControllerLink } from "../controller-link.ts";
import { forwardToController } from "../local-api/forward-service.ts";

type AnyHandler = (request: unknown, ctx: HandlerContext) => unknown;

/**
 * A per-node service on an agent's local API whose requests carry `node_id`: a call for this node
 * (or with no node_id) runs here; a call for any other node goes to the controller (with this node's
 * identity), which routes it to the owning node.
 */
export function routeByNodeId<S extends DescService>(
  service: S,
  ownNodeId: () => string,
  local: Partial<ServiceImpl<S>>,
  link: ControllerLink,
  emptyIsHere = true,
): Partial<ServiceImpl<S>> {
  const remote = forwardToController(service, link) as Record<string, AnyHandler>;
  const here = local as Record<string, AnyHandler | undefined>;
  const impl: Record<string, AnyHandler> = {};
  const isHere = (request: unknown) => {
    const nodeId = ((request as { nodeId?: string }).nodeId ?? "").trim();
    return (emptyIsHere && nodeId === "") || nodeId === ownNodeId();
  };
  for (const method of service.methods) {
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
  return impl as Partial<ServiceImpl<S>>;
}

/** NanoPing's PipelinesService on an agent's local API, routed by `node_id`. */
export function routingPipelinesService(
  ownNodeId: () => string,
  local: Partial<ServiceImpl<typeof PipelinesService>>,
  link: ControllerLink,
): Partial<ServiceImpl<typeof PipelinesService>> {
  // NanoPing's calls must name their node: an empty node_id goes to the controller, which refuses it.
  return routeByNodeId(PipelinesService, ownNodeId, local, link, false);
}
