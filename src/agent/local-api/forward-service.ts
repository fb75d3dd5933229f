import type { DescService } from "@bufbuild/protobuf";
import type { HandlerContext, ServiceImpl } from "@connectrpc/connect";
import { CorralError } from "../../base/errors.ts";
import { fromConnectError } from "../../rpc/connect-errors.ts";
import type { ControllerLink } from "../controller-link.ts";

type Forwarder = (request: unknown, ctx: HandlerContext) => unknown;

/**
 * Serves a cluster-wide service on the node's local API by passing every call to the controller with
 * the node's own identity (so the controller's access rules still apply): Distributed LLM's services
 * "served by the controller and by agents, forwarding".
 */
export function forwardToController<S extends DescService>(
  service: S,
  link: ControllerLink,
): Partial<ServiceImpl<S>> {
  const impl: Record<string, Forwarder> = {};
  for (const method of service.methods) {
    const call = (request: unknown, ctx: HandlerContext) => {
      const client = link.client(service) as unknown as Record<
        string,
        (request: unknown, options: { signal: AbortSignal; timeoutMs?: number }) => unknown
      >;
      const timeoutMs = ctx.timeoutMs();
      return client[method.localName]?.(request, {
        signal: ctx.signal,
        ...(timeoutMs === undefined ? {} : { timeoutMs }),
      });
    };
    if (method.methodKind === "unary") {
      impl[method.localName] = async (request, ctx) => {
        try {
          return await (call(request, ctx) as Promise<unknown>);
        } catch (error) {
          throw fromConnectError(error);
        }
      };
    } else if (method.methodKind === "server_streaming") {
      impl[method.localName] = async function* (request, ctx) {
        try {
          yield* call(request, ctx) as AsyncIterable<unknown>;
        } catch (error) {
          throw fromConnectError(error);
        }
      };
    } else {
      impl[method.localName] = () => {
        throw new CorralError(
          "UNIMPLEMENTED",
          `${service.typeName}/${method.name} is served by the controller only`,
        );
      };
    }
  }
  return impl as Partial<ServiceImpl<S>>;
}
