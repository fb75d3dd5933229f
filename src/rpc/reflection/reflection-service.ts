import type { DescService } from "@bufbuild/protobuf";
import type { HandlerContext, ServiceImpl } from "@connectrpc/connect";
import { grpcStatusOf } from "../../base/errors.ts";
import { ServerReflection as ServerReflectionV1 } from "../../gen/grpc/reflection/v1/reflection_pb.ts";
import { ServerReflection as ServerReflectionV1alpha } from "../../gen/grpc/reflection/v1alpha/reflection_pb.ts";
import type { RpcServer } from "../rpc-server.ts";
import { DescriptorIndex } from "./descriptor-index.ts";

export { ServerReflectionV1, ServerReflectionV1alpha };

/**
 * A reflection request of either version: v1 and v1alpha are identical field for field, so one
 * implementation serves both (only the messages' type names differ).
 */
export interface ReflectionRequestLike {
  readonly host: string;
  readonly messageRequest:
    | { readonly case: "fileByFilename"; readonly value: string }
    | { readonly case: "fileContainingSymbol"; readonly value: string }
    | {
        readonly case: "fileContainingExtension";
        readonly value: { readonly containingType: string; readonly extensionNumber: number };
      }
    | { readonly case: "allExtensionNumbersOfType"; readonly value: string }
    | { readonly case: "listServices"; readonly value: string }
    | { readonly case: undefined; readonly value?: undefined };
}

/** The `message_response` oneof of a reflection response, as a plain init shape of either version. */
export type ReflectionAnswer =
  | { case: "fileDescriptorResponse"; value: { fileDescriptorProto: Uint8Array[] } }
  | { case: "allExtensionNumbersResponse"; value: { baseTypeName: string; extensionNumber: number[] } }
  | { case: "listServicesResponse"; value: { service: { name: string }[] } }
  | { case: "errorResponse"; value: { errorCode: number; errorMessage: string } };

export interface ReflectionServices {
  readonly v1: ServiceImpl<typeof ServerReflectionV1>;
  readonly v1alpha: ServiceImpl<typeof ServerReflectionV1alpha>;
  /** Reflection streams open right now (for tests and metrics). */
  readonly activeStreams: number;
  /** Answers one request without a stream (the same logic the streams use). */
  answer(request: ReflectionRequestLike): ReflectionAnswer;
}

/**
 * Server reflection (`grpc.reflection.v1` and `v1alpha`) over the services `getServices` returns,
 * typically `() => server.services` so that services mounted later (health) are listed too. The
 * descriptor index is rebuilt only when that list changes.
 */
export function createReflectionServices(getServices: () => readonly DescService[]): ReflectionServices {
  let cached: { services: readonly DescService[]; index: DescriptorIndex } | undefined;
  const currentIndex = (): DescriptorIndex => {
    const services = getServices();
    if (cached === undefined || !sameServices(cached.services, services)) {
      cached = { services: [...services], index: new DescriptorIndex(services) };
    }
    return cached.index;
  };
  let active = 0;

  const answer = (request: ReflectionRequestLike): ReflectionAnswer => answerWith(currentIndex(), request);

  async function* info<R extends ReflectionRequestLike>(requests: AsyncIterable<R>, ctx: HandlerContext) {
    active++;
    try {
      for await (const request of untilAborted(requests, ctx.signal)) {
        yield { validHost: request.host, originalRequest: request, messageResponse: answer(request) };
      }
    } finally {
      active--;
    }
  }

  return {
    v1: { serverReflectionInfo: (requests, ctx) => info(requests, ctx) },
    v1alpha: { serverReflectionInfo: (requests, ctx) => info(requests, ctx) },
    get activeStreams() {
      return active;
    },
    answer,
  };
}

/** Mounts both reflection versions on `server`, listing whatever the server has mounted at call time. */
export function mountReflection(server: Pick<RpcServer, "add" | "services">): ReflectionServices {
  const reflection = createReflectionServices(() => server.services);
  server.add(ServerReflectionV1, reflection.v1);
  server.add(ServerReflectionV1alpha, reflection.v1alpha);
  return reflection;
}

const notFound = grpcStatusOf.NOT_FOUND;

function answerWith(index: DescriptorIndex, request: ReflectionRequestLike): ReflectionAnswer {
  const files = (found: Uint8Array[] | undefined, what: string): ReflectionAnswer =>
    found === undefined
      ? error(notFound, `${what} not found`)
      : { case: "fileDescriptorResponse", value: { fileDescriptorProto: found } };
  const message = request.messageRequest;
  switch (message.case) {
    case "listServices":
      return {
        case: "listServicesResponse",
        value: { service: index.services.map((name) => ({ name })) },
      };
    case "fileByFilename":
      return files(index.fileByName(message.value), `file "${message.value}"`);
    case "fileContainingSymbol":
      return files(index.fileContainingSymbol(message.value), `symbol "${message.value}"`);
    case "fileContainingExtension": {
      const { containingType, extensionNumber } = message.value;
      return files(
        index.fileContainingExtension(containingType, extensionNumber),
        `extension ${extensionNumber} of "${containingType}"`,
      );
    }
    case "allExtensionNumbersOfType": {
      const numbers = index.extensionNumbersOf(message.value);
      return numbers === undefined
        ? error(notFound, `type "${message.value}" not found`)
        : {
            case: "allExtensionNumbersResponse",
            value: { baseTypeName: message.value, extensionNumber: numbers },
          };
    }
    case undefined:
      return error(grpcStatusOf.INVALID_ARGUMENT, "the request names no reflection query");
  }
}

function error(errorCode: number, errorMessage: string): ReflectionAnswer {
  return { case: "errorResponse", value: { errorCode, errorMessage } };
}

function sameServices(a: readonly DescService[], b: readonly DescService[]): boolean {
  return a.length === b.length && a.every((service, i) => service === b[i]);
}

const abortedMarker = Symbol("aborted");

/**
 * Reads `source` until it ends or `signal` aborts — even while waiting for the client's next
 * message, which a plain `for await` would keep doing past the deadline.
 */
export async function* untilAborted<T>(source: AsyncIterable<T>, signal: AbortSignal): AsyncGenerator<T> {
  const iterator = source[Symbol.asyncIterator]();
  let pending = false;
  let done = false;
  try {
    while (!signal.aborted) {
      pending = true;
      const step = await raceAbort(iterator.next(), signal);
      if (step === abortedMarker) break;
      pending = false;
      if (step.done === true) {
        done = true;
        break;
      }
      yield step.value;
    }
  } finally {
    if (!done) {
      // With a read still pending, return() would queue behind it: let it settle when the call is torn
      // down instead of waiting for it here.
      const closing = iterator.return?.();
      if (pending) closing?.catch(() => undefined);
      else await closing;
    }
  }
}

function raceAbort<T>(promise: Promise<T>, signal: AbortSignal): Promise<T | typeof abortedMarker> {
  if (signal.aborted) return Promise.resolve(abortedMarker);
  return new Promise((resolve, reject) => {
    const onAbort = () => resolve(abortedMarker);
    signal.addEventListener("abort", onAbort, { once: true });
    promise.then(
      (value) => {
        signal.removeEventListener("abort", onAbort);
        resolve(value);
      },
      (reason: unknown) => {
        signal.removeEventListener("abort", onAbort);
        reject(reason);
      },
    );
  });
}
