import type { DescMethod, DescService } from "@bufbuild/protobuf";
import type { HandlerContext, ServiceImpl } from "@connectrpc/connect";
import { CorralError } from "../base/errors.ts";
import type { NodeRegistry } from "../core/nodes/node-registry.ts";
import { fromConnectError } from "../rpc/connect-errors.ts";
import { targetNodeHeader } from "../wire/target-node.ts";
import type { AgentReach, ClusterFacts } from "./face-context.ts";

/** What relaying needs: which node is the controller's own, resolving a target, and dialing its agent. */
export interface RelayDeps {
  readonly facts: Pick<ClusterFacts, "controllerNodeId" | "controllerName">;
  readonly registry: Pick<NodeRegistry, "get">;
  readonly agents: AgentReach;
}

type AnyHandler = (request: unknown, ctx: HandlerContext) => unknown;

/**
 * Serves a per-node service on the controller: a call for the controller's own node runs here (the
 * controller is a node too), a call for another node is passed to that node's agent over mTLS, with
 * the caller's deadline and cancellation, and its answer or status passed back unchanged.
 */
export function relayToNode<S extends DescService>(
  service: S,
  context: RelayDeps,
  local: Partial<ServiceImpl<S>>,
  targetOf: (request: unknown, ctx: HandlerContext) => string = (_request, ctx) =>
    ctx.requestHeader.get(targetNodeHeader)?.trim() ?? "",
): Partial<ServiceImpl<S>> {
  const impl: Record<string, AnyHandler> = {};
  const localHandlers = local as Record<string, AnyHandler | undefined>;
  for (const method of service.methods) {
    const here = localHandlers[method.localName]?.bind(local) as AnyHandler | undefined;
    const remote = (request: unknown, ctx: HandlerContext) =>
      forward(context, service, method, targetOf(request, ctx), request, ctx);
    const isLocal = async (request: unknown, ctx: HandlerContext) => {
      const target = targetOf(request, ctx);
      if (
        target === "" ||
        target === context.facts.controllerNodeId ||
        target === context.facts.controllerName
      )
        return true;
      return (await context.registry.get(target)).id === context.facts.controllerNodeId;
    };
    const unimplemented = () => {
      throw new CorralError(
        "UNIMPLEMENTED",
        `${service.typeName}/${method.name} is not served by the controller's own node`,
      );
    };
    impl[method.localName] =
      method.methodKind === "server_streaming"
        ? async function* (request, ctx) {
            if (await isLocal(request, ctx))
              yield* (here ?? unimplemented)(request, ctx) as AsyncIterable<unknown>;
            else yield* (await remote(request, ctx)) as AsyncIterable<unknown>;
          }
        : async (request, ctx) =>
            (await isLocal(request, ctx)) ? (here ?? unimplemented)(request, ctx) : remote(request, ctx);
  }
  return impl as Partial<ServiceImpl<S>>;
}

async function forward(
  context: RelayDeps,
  service: DescService,
  method: DescMethod,
  target: string,
  request: unknown,
  ctx: HandlerContext,
): Promise<unknown> {
  const node = await context.agents.resolve(target);
  const client = (await context.agents.client(service, node)) as unknown as Record<
    string,
    (request: unknown, options: { signal: AbortSignal; timeoutMs?: number }) => unknown
  >;
  const call = client[method.localName];
  if (call === undefined) throw new CorralError("INTERNAL", `no client method for ${method.name}`);
  // A watch relayed without a caller deadline lives as long as the caller's call (its signal ends it):
  // 0 tells the transport not to apply its default deadline, which would cut every watch at 30 s.
  const timeoutMs = ctx.timeoutMs() ?? (method.methodKind === "server_streaming" ? 0 : undefined);
  const options = { signal: ctx.signal, ...(timeoutMs === undefined ? {} : { timeoutMs }) };
  const explain = (error: unknown): never => {
    const corral = fromConnectError(error);
    if (corral.code === "UNAVAILABLE") {
      throw new CorralError(
        "UNAVAILABLE",
        `node ${node.name} (${node.address}:${node.port}) cannot be reached: ${corral.message}`,
      );
    }
    throw corral;
  };
  if (method.methodKind === "server_streaming") {
    const stream = call(request, options) as AsyncIterable<unknown>;
    return (async function* () {
      try {
        yield* stream;
      } catch (error) {
        explain(error);
      }
    })();
  }
  if (method.methodKind !== "unary")
    throw new CorralError("UNIMPLEMENTED", `${method.name}: only unary and server streams are relayed`);
  try {
    return await (call(request, options) as Promise<unknown>);
  } catch (error) {
    return explain(error);
  }
}
