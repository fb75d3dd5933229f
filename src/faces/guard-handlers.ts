import type { DescMethod, DescService } from "@bufbuild/protobuf";
import type { HandlerContext, ServiceImpl } from "@connectrpc/connect";

type AnyHandler = (request: unknown, ctx: HandlerContext) => unknown;

/**
 * Runs `guard` before every method of `impl` — for a stream, before its first message — so a check
 * that depends on the request (which node, which service it offers) is written once per service.
 * The guard is told the method of `service` it guards (ctx names the method called, which differs
 * when another service calls these handlers, e.g. NodeOpsService/SetPipelineRunning).
 */
export function guardHandlers<S extends DescService>(
  service: S,
  impl: Partial<ServiceImpl<S>>,
  guard: (request: unknown, ctx: HandlerContext, method: DescMethod) => Promise<void>,
): Partial<ServiceImpl<S>> {
  const handlers = impl as Record<string, AnyHandler | undefined>;
  const guarded: Record<string, AnyHandler> = {};
  for (const method of service.methods) {
    const handler = handlers[method.localName];
    if (handler === undefined) continue;
    guarded[method.localName] =
      method.methodKind === "server_streaming"
        ? async function* (request, ctx) {
            await guard(request, ctx, method);
            yield* handler(request, ctx) as AsyncIterable<unknown>;
          }
        : async (request, ctx) => {
            await guard(request, ctx, method);
            return handler(request, ctx);
          };
  }
  return guarded as Partial<ServiceImpl<S>>;
}
