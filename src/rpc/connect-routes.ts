import type { DescService } from "@bufbuild/protobuf";
import type { ConnectRouter, HandlerContext, ServiceImpl } from "@connectrpc/connect";
import { type AuthorizeOptions, authorizeCall } from "./authorize.ts";
import { principalOf } from "./principal-context.ts";
import { toConnectError } from "./status.ts";
import { principalLabel, type StreamLimits } from "./stream-limits.ts";

type AnyHandler = (...args: unknown[]) => unknown;

/**
 * Registers an implementation on a Connect router (gRPC-Web and Connect for browsers) with corral's
 * error mapping: a CorralError keeps its code on this transport too, streams included.
 */
export function addConnectService<S extends DescService>(
  router: ConnectRouter,
  service: S,
  impl: Partial<ServiceImpl<S>>,
  authorization: AuthorizeOptions,
  streamLimits?: StreamLimits,
): void {
  const wrapped: Record<string, AnyHandler> = {};
  const handlers = impl as Record<string, AnyHandler | undefined>;
  for (const method of service.methods) {
    const handler = handlers[method.localName];
    if (typeof handler !== "function") continue;
    const bound = handler.bind(impl) as (request: unknown, ctx: HandlerContext) => unknown;
    wrapped[method.localName] =
      method.methodKind === "server_streaming" || method.methodKind === "bidi_streaming"
        ? (request, ctx) =>
            mapStreamErrors(
              authorizedStream(bound, request, ctx as HandlerContext, authorization, streamLimits),
            )
        : async (request, ctx) => {
            try {
              let response: unknown;
              await authorizeCall(ctx as HandlerContext, authorization, async () => {
                response = await bound(request, ctx as HandlerContext);
              });
              return response;
            } catch (error) {
              throw toConnectError(error);
            }
          };
  }
  router.service(service, wrapped as Partial<ServiceImpl<S>>);
}

/**
 * Authorizes before the first message; a refused stream fails before it sends anything. The stream
 * counts against its principal's open-stream limit until it ends (this transport does not say which
 * connection carries it; the HTTP/2 settings of the web listener bound that).
 */
async function* authorizedStream(
  handler: (request: unknown, ctx: HandlerContext) => unknown,
  request: unknown,
  ctx: HandlerContext,
  authorization: AuthorizeOptions,
  streamLimits: StreamLimits | undefined,
): AsyncGenerator<unknown> {
  let source: AsyncIterable<unknown> | undefined;
  let release: (() => void) | undefined;
  await authorizeCall(ctx, { ...authorization, audit: authorization.audit }, async () => {
    release = streamLimits?.open(undefined, principalLabel(principalOf(ctx), ""));
    source = handler(request, ctx) as AsyncIterable<unknown>;
  });
  try {
    if (source !== undefined) yield* source;
  } finally {
    release?.();
  }
}

async function* mapStreamErrors<T>(source: AsyncIterable<T>): AsyncGenerator<T> {
  try {
    yield* source;
  } catch (error) {
    throw toConnectError(error);
  }
}
