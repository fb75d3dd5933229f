import type { HandlerContext, ServiceImpl } from "@connectrpc/connect";
import { CorralError } from "../../core/errors.ts";
import { PipelinesService } from "../../gen/pipelines_pb.ts";
import type { FaceContext } from "../face-context.ts";
import { relayToNode } from "../node-relay.ts";

type AnyHandler = (request: unknown, ctx: HandlerContext) => unknown;

/**
 * PipelinesService on the controller: every call names its node (`node_id`); it runs here for the
 * controller's own node and is passed to the owning agent over mTLS otherwise. Unknown node:
 * NOT_FOUND; a node that does not offer PIPELINES: FAILED_PRECONDITION; node unreachable: UNAVAILABLE.
 */
export function controllerPipelinesService(
  context: FaceContext,
  local: Partial<ServiceImpl<typeof PipelinesService>>,
): Partial<ServiceImpl<typeof PipelinesService>> {
  const relayed = relayToNode(PipelinesService, context, local, (request) => nodeIdOf(request)) as Record<
    string,
    AnyHandler
  >;
  const check = async (request: unknown) => {
    const nodeId = nodeIdOf(request);
    if (nodeId === "")
      throw CorralError.invalidArgument("node_id", "must name the node that owns the pipeline");
    const node = await context.registry.get(nodeId);
    if (!node.services.includes("PIPELINES"))
      throw new CorralError("FAILED_PRECONDITION", `node ${node.name} does not offer the PIPELINES service`);
  };
  const impl: Record<string, AnyHandler> = {};
  for (const method of PipelinesService.methods) {
    const handler = relayed[method.localName];
    if (handler === undefined) continue;
    impl[method.localName] =
      method.methodKind === "server_streaming"
        ? async function* (request, ctx) {
            await check(request);
            yield* handler(request, ctx) as AsyncIterable<unknown>;
          }
        : async (request, ctx) => {
            await check(request);
            return handler(request, ctx);
          };
  }
  return impl as Partial<ServiceImpl<typeof PipelinesService>>;
}

function nodeIdOf(request: unknown): string {
  return ((request as { nodeId?: string }).nodeId ?? "").trim();
}
