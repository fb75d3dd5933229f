import type { DescMessage, DescService } from "@bufbuild/protobuf";
import {
  Code,
  ConnectError,
  type ConnectRouter,
  type HandlerContext,
  type ServiceImpl,
} from "@connectrpc/connect";
import {
  type CallContext,
  type ChainInterceptor,
  peerKey,
  runChain,
  streamThroughChain,
} from "./call-chain.ts";
import type { ListenerChain } from "./listener-chain.ts";
import { checkRequest } from "./request-guard.ts";
import { toConnectError } from "./status.ts";
import { limitStreams } from "./stream-limits.ts";

type AnyHandler = (...args: unknown[]) => unknown;

/**
 * Registers an implementation on a Connect router (gRPC-Web and Connect for browsers) behind the same
 * chain as the gRPC listeners (listener-chain.ts): the call log and metrics, authorization, the
 * open-stream limit, the edge checks of request-guard.ts once the caller is authorized, and corral's
 * error mapping (a CorralError keeps its code on this transport too, streams included).
 */
export function addConnectService<S extends DescService>(
  router: ConnectRouter,
  service: S,
  impl: Partial<ServiceImpl<S>>,
  chain: ListenerChain,
): void {
  // Innermost, as on the gRPC listeners; per principal only (see limitStreams).
  const interceptors: readonly ChainInterceptor[] = [...chain.interceptors, limitStreams(chain.streamLimits)];
  const wrapped: Record<string, AnyHandler> = {};
  const handlers = impl as Record<string, AnyHandler | undefined>;
  for (const method of service.methods) {
    const handler = handlers[method.localName];
    if (typeof handler !== "function") continue;
    const bound = handler.bind(impl) as (request: unknown, ctx: HandlerContext) => unknown;
    const path = `/${service.typeName}/${method.name}`;
    const mapError = (error: unknown) => connectErrorOf(error, (fault) => chain.onFault(fault, path));
    const streamedInput = method.methodKind === "client_streaming" || method.methodKind === "bidi_streaming";
    const checked = (request: unknown) =>
      streamedInput
        ? checkEach(method.input, request as AsyncIterable<unknown>)
        : checkRequest(method.input, request);
    wrapped[method.localName] =
      method.methodKind === "server_streaming" || method.methodKind === "bidi_streaming"
        ? (request, ctx) =>
            mapStreamErrors(
              streamThroughChain(
                interceptors,
                callContext(ctx as HandlerContext),
                () => bound(checked(request), ctx as HandlerContext) as AsyncIterable<unknown>,
              ),
              mapError,
            )
        : async (request, ctx) => {
            try {
              let response: unknown;
              await runChain(interceptors, callContext(ctx as HandlerContext), async () => {
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

/**
 * The interceptors' view of a Connect call. Connect makes a fresh plain context object for each
 * call, so the peer (put in its values by the web listener) is added to it rather than to a copy:
 * the handler and the interceptors then share one context, as on the gRPC listeners.
 */
function callContext(ctx: HandlerContext): CallContext {
  return Object.assign(ctx, { peer: ctx.values.get(peerKey) });
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
