import type { DescService } from "@bufbuild/protobuf";
import type { HandlerContext, ServiceImpl } from "@connectrpc/connect";

type AnyHandler = (request: unknown, ctx: HandlerContext) => unknown;

/**
 * Runs `guard` before every method of `impl` — for a stream, before its first message — so a check
 * that depends on the request (which node, which service it offers) is written once per service.
 */
export function guardHandlers<S extends DescService>(
  service: S,
  impl: Partial<ServiceImpl<S>>,
  guard: (request: unknown, ctx: HandlerContext) => Promise<void>,
): Partial<ServiceImpl<S>> {
  const handlers = impl as Record<string, AnyHandler | undefined>;
  const guarded: Record<string, AnyHandler> = {};
  for (const method of service.methods) {
    const handler = handlers[method.localName];
    if (handler === undefined) continue;
    guarded[method.localName] =
      method.methodKind === "server_streaming"
        ? async function* (request, ctx) {
            await guard(request, ctx);
            yield* handler(request, ctx) as AsyncIterable<unknown>;
          }
        : async (request, ctx) => {
            await guard(request, ctx);
            return handler(request, ctx);
          };
  }
  return guarded as Partial<ServiceImpl<S>>;
}
