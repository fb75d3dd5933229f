import type { DescMessage, DescService } from "@bufbuild/protobuf";
import {
  Code,
  ConnectError,
  type ConnectRouter,
  type HandlerContext,
  type ServiceImpl,
} from "@connectrpc/connect";
import { type AuthorizeOptions, authorizeCall } from "./authorize.ts";
import { principalOf } from "./principal-context.ts";
import { checkRequest } from "./request-guard.ts";
import { toConnectError } from "./status.ts";
import { principalLabel, type StreamLimits } from "./stream-limits.ts";

type AnyHandler = (...args: unknown[]) => unknown;

/** Where a fault of this layer goes (the error could not even be mapped); the caller hears INTERNAL. */
export type ConnectFault = (error: unknown, method: string) => void;

const reportToStderr: ConnectFault = (error, method) =>
  console.error(`corral: fault answering ${method} (answered INTERNAL):`, error);

/**
 * Registers an implementation on a Connect router (gRPC-Web and Connect for browsers) with corral's
 * error mapping: a CorralError keeps its code on this transport too, streams included. Requests pass
 * the same edge checks as on the gRPC listeners (request-guard.ts) once the caller is authorized.
 */
export function addConnectService<S extends DescService>(
  router: ConnectRouter,
  service: S,
  impl: Partial<ServiceImpl<S>>,
  authorization: AuthorizeOptions,
  onFault: ConnectFault = reportToStderr,
  streamLimits?: StreamLimits,
): void {
  const wrapped: Record<string, AnyHandler> = {};
  const handlers = impl as Record<string, AnyHandler | undefined>;
  for (const method of service.methods) {
    const handler = handlers[method.localName];
    if (typeof handler !== "function") continue;
    const bound = handler.bind(impl) as (request: unknown, ctx: HandlerContext) => unknown;
    const path = `/${service.typeName}/${method.name}`;
    const mapError = (error: unknown) => connectErrorOf(error, (fault) => onFault(fault, path));
    const streamedInput = method.methodKind === "client_streaming" || method.methodKind === "bidi_streaming";
    const checked = (request: unknown) =>
      streamedInput
        ? checkEach(method.input, request as AsyncIterable<unknown>)
        : checkRequest(method.input, request);
    wrapped[method.localName] =
      method.methodKind === "server_streaming" || method.methodKind === "bidi_streaming"
        ? (request, ctx) =>
            mapStreamErrors(
              authorizedStream(
                (req, c) => bound(checked(req), c),
                request,
                ctx as HandlerContext,
                authorization,
                streamLimits,
              ),
              mapError,
            )
        : async (request, ctx) => {
            try {
              let response: unknown;
              await authorizeCall(ctx as HandlerContext, authorization, async () => {
                response = await bound(checked(request), ctx as HandlerContext);
              });
              return response;
            } catch (error) {
              throw mapError(error);
            }
          };
  }
  router.service(service, wrapped as Partial<ServiceImpl<S>>);
}

/** The error as the client should see it; if mapping it fails, a plain INTERNAL (and the fault logged). */
function connectErrorOf(error: unknown, fault: (error: unknown) => void): ConnectError {
  try {
    return toConnectError(error);
  } catch (again) {
    try {
      fault(again);
    } catch {
      // The logger failed too: nothing left to tell.
    }
    return new ConnectError("internal error in the server; its log has the details", Code.Internal);
  }
}

async function* checkEach(input: DescMessage, requests: AsyncIterable<unknown>): AsyncGenerator<unknown> {
  for await (const request of requests) yield checkRequest(input, request);
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

async function* mapStreamErrors<T>(
  source: AsyncIterable<T>,
  mapError: (error: unknown) => ConnectError,
): AsyncGenerator<T> {
  try {
    yield* source;
  } catch (error) {
    throw mapError(error);
  }
}
