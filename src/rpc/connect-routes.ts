import type { DescService } from "@bufbuild/protobuf";
import type { ConnectRouter, ServiceImpl } from "@connectrpc/connect";
import { toConnectError } from "./status.ts";

type AnyHandler = (...args: unknown[]) => unknown;

/**
 * Registers an implementation on a Connect router (gRPC-Web and Connect for browsers) with corral's
 * error mapping: a CorralError keeps its code on this transport too, streams included.
 */
export function addConnectService<S extends DescService>(
  router: ConnectRouter,
  service: S,
  impl: Partial<ServiceImpl<S>>,
): void {
  const wrapped: Record<string, AnyHandler> = {};
  const handlers = impl as Record<string, AnyHandler | undefined>;
  for (const method of service.methods) {
    const handler = handlers[method.localName];
    if (typeof handler !== "function") continue;
    const bound = handler.bind(impl);
    wrapped[method.localName] =
      method.methodKind === "server_streaming" || method.methodKind === "bidi_streaming"
        ? (...args) => mapStreamErrors(bound(...args) as AsyncIterable<unknown>)
        : async (...args) => {
            try {
              return await bound(...args);
            } catch (error) {
              throw toConnectError(error);
            }
          };
  }
  router.service(service, wrapped as Partial<ServiceImpl<S>>);
}

async function* mapStreamErrors<T>(source: AsyncIterable<T>): AsyncGenerator<T> {
  try {
    yield* source;
  } catch (error) {
    throw toConnectError(error);
  }
}
