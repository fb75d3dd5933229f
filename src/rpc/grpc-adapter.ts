import type { Readable } from "node:stream";
import {
  create,
  type DescMessage,
  type DescMethod,
  type DescService,
  fromBinary,
  isMessage,
  type MessageInitShape,
  type MessageShape,
  toBinary,
} from "@bufbuild/protobuf";
import type { ContextValues, ServiceImpl } from "@connectrpc/connect";
import {
  type MethodDefinition,
  type ServerDuplexStream,
  type ServerReadableStream,
  type ServerUnaryCall,
  type ServerWritableStream,
  type ServiceDefinition,
  type sendUnaryData,
  status,
  type UntypedHandleCall,
  type UntypedServiceImplementation,
} from "@grpc/grpc-js";
import { CorralError } from "../base/errors.ts";
import { runChain } from "./call-chain.ts";
import { GrpcHandlerContext } from "./call-context.ts";
import { preEncodedBytesOf } from "./pre-encoded.ts";
import { checkRequest, type GuardOptions, MalformedRequest } from "./request-guard.ts";
import { toGrpcStatus } from "./status.ts";

/**
 * An interceptor for grpc-js listeners only: it may read the grpc-js call (an agent's listener reads
 * the peer certificate). Interceptors every listener shares are ChainInterceptors (call-chain.ts).
 */
export type CallInterceptor = (ctx: GrpcHandlerContext, next: () => Promise<void>) => Promise<void>;

export interface MountOptions {
  readonly interceptors?: readonly CallInterceptor[];
  /** Fresh per-call context values (e.g. the peer's identity is added by an interceptor). */
  readonly contextValues?: () => ContextValues;
  /**
   * Where a fault of the RPC layer goes: anything thrown where no handler can answer it (a status
   * grpc-js refuses, a serializer, an interceptor's bug). The caller is told only INTERNAL.
   */
  readonly onFault?: (error: unknown, method: string) => void;
  /** Bounds every request is checked against before its handler runs (request-guard.ts). */
  readonly requestGuard?: GuardOptions;
}

/** What a client hears about a fault: nothing of it (the server's log has the stack). */
const faultStatus = {
  code: status.INTERNAL,
  details: "internal error in the server; its log has the details",
};

/** Without a logger a fault still leaves a trace, on stderr. */
function reportToStderr(error: unknown, method: string): void {
  console.error(`corral: fault answering ${method} (answered INTERNAL):`, error);
}

export interface MountedService {
  readonly service: DescService;
  readonly definition: ServiceDefinition;
  readonly implementation: UntypedServiceImplementation;
}

type AnyHandler = (...args: never[]) => unknown;

/**
 * Turns a protobuf-es service and a Connect-style implementation into what grpc-js's `Server.addService`
 * takes. Methods the implementation lacks answer UNIMPLEMENTED.
 */
export function mountService<S extends DescService>(
  service: S,
  impl: Partial<ServiceImpl<S>>,
  options: MountOptions = {},
): MountedService {
  const definition: Record<string, MethodDefinition<unknown, unknown>> = {};
  const implementation: UntypedServiceImplementation = {};
  const handlers = impl as Record<string, AnyHandler | undefined>;
  for (const method of service.methods) {
    definition[method.localName] = methodDefinition(service, method, faultReporter(method, options));
    const handler = handlers[method.localName];
    const bound: AnyHandler =
      typeof handler === "function"
        ? (handler.bind(impl) as AnyHandler)
        : () => {
            throw new CorralError("UNIMPLEMENTED", `${service.typeName}/${method.name} is not implemented`);
          };
    implementation[method.localName] = callHandler(method, bound, options);
  }
  return { service, definition, implementation };
}

type Fault = (error: unknown) => void;

function faultReporter(method: DescMethod, options: MountOptions): Fault {
  const path = `/${method.parent.typeName}/${method.name}`;
  const report = options.onFault ?? reportToStderr;
  return (error) => {
    try {
      report(error, path);
    } catch {
      // The logger itself failed; there is nobody left to tell, and the process must go on.
    }
  };
}

/**
 * A body that does not decode becomes a MalformedRequest that the call path refuses with
 * INVALID_ARGUMENT (grpc-js would answer INTERNAL); a response that does not encode is a fault of ours,
 * logged before grpc-js answers INTERNAL.
 */
function methodDefinition(
  service: DescService,
  method: DescMethod,
  fault: Fault,
): MethodDefinition<unknown, unknown> {
  const input = method.input;
  const output = method.output;
  const decodeRequest = (bytes: Buffer): unknown => {
    try {
      return fromBinary(input, bytes);
    } catch (error) {
      return new MalformedRequest(input.typeName, error instanceof Error ? error.message : "undecodable");
    }
  };
  const encodeResponse = (message: unknown): Buffer => {
    try {
      const bytes = preEncodedBytesOf(message);
      if (bytes !== undefined) return asBuffer(bytes);
      return asBuffer(toBinary(output, message as MessageShape<DescMessage>));
    } catch (error) {
      fault(error);
      throw error;
    }
  };
  return {
    path: `/${service.typeName}/${method.name}`,
    requestStream: method.methodKind === "client_streaming" || method.methodKind === "bidi_streaming",
    responseStream: method.methodKind === "server_streaming" || method.methodKind === "bidi_streaming",
    originalName: method.localName,
    requestSerialize: (message: unknown) => asBuffer(toBinary(input, message as MessageShape<DescMessage>)),
    requestDeserialize: decodeRequest,
    responseSerialize: encodeResponse,
    responseDeserialize: (bytes: Buffer) => fromBinary(output, bytes),
  };
}

/**
 * Wraps without copying: toBinary's result is ours alone. The prototype is swapped rather than the
 * bytes wrapped with `Buffer.from(bytes.buffer, …)`: V8 keeps a typed array of up to 64 bytes on its
 * heap, and reading `.buffer` moves it off (an allocation and a copy), which costs more than
 * serializing a small message.
 */
function asBuffer(bytes: Uint8Array): Buffer {
  return Object.setPrototypeOf(bytes, Buffer.prototype) as Buffer;
}

function toMessage(schema: DescMessage, value: unknown): MessageShape<DescMessage> {
  if (isMessage(value, schema)) return value;
  return create(schema, value as MessageInitShape<DescMessage>);
}

function callHandler(method: DescMethod, handler: AnyHandler, options: MountOptions): UntypedHandleCall {
  const interceptors = options.interceptors ?? [];
  const fault = faultReporter(method, options);
  const input = method.input;
  const guard = options.requestGuard;
  const newContext = (call: ConstructorParameters<typeof GrpcHandlerContext>[0]) =>
    new GrpcHandlerContext(call, method, options.contextValues?.());
  // async: an interceptor that throws before returning its promise still ends in a rejection.
  const intercept = async (ctx: GrpcHandlerContext, run: () => Promise<void>): Promise<void> =>
    runChain(interceptors, ctx, run);
  // Each entry point is guarded twice: a synchronous throw (making the context) and a rejected run
  // (a status grpc-js refuses, a callback that throws) both end as INTERNAL, logged, never a crash.
  switch (method.methodKind) {
    case "unary":
      return (call: ServerUnaryCall<unknown, unknown>, callback: sendUnaryData<unknown>) => {
        const failed = (error: unknown) => answerFault(error, fault, () => callback(faultStatus));
        try {
          const ctx = newContext(call);
          runUnary(ctx, call, callback, intercept, () =>
            handler(checkRequest(input, call.request, guard) as never, ctx as never),
          ).catch(failed);
        } catch (error) {
          failed(error);
        }
      };
    case "server_streaming":
      return (call: ServerWritableStream<unknown, unknown>) => {
        const failed = (error: unknown) => answerFault(error, fault, () => failStream(call));
        try {
          const ctx = newContext(call);
          runStream(
            ctx,
            call,
            intercept,
            () =>
              handler(
                checkRequest(input, call.request, guard) as never,
                ctx as never,
              ) as AsyncIterable<unknown>,
          ).catch(failed);
        } catch (error) {
          failed(error);
        }
      };
    case "client_streaming":
      return (call: ServerReadableStream<unknown, unknown>, callback: sendUnaryData<unknown>) => {
        const failed = (error: unknown) => answerFault(error, fault, () => callback(faultStatus));
        try {
          const ctx = newContext(call);
          runUnary(ctx, call, callback, intercept, () =>
            handler(readRequests(call, input, guard, ctx.signal) as never, ctx as never),
          ).catch(failed);
        } catch (error) {
          failed(error);
        }
      };
    case "bidi_streaming":
      return (call: ServerDuplexStream<unknown, unknown>) => {
        const failed = (error: unknown) => answerFault(error, fault, () => failStream(call));
        try {
          const ctx = newContext(call);
          runStream(
            ctx,
            call,
            intercept,
            () =>
              handler(
                readRequests(call, input, guard, ctx.signal) as never,
                ctx as never,
              ) as AsyncIterable<unknown>,
          ).catch(failed);
        } catch (error) {
          failed(error);
        }
      };
  }
}

/** The last resort: log the fault, then answer INTERNAL if the call can still be answered at all. */
function answerFault(error: unknown, fault: Fault, answer: () => void): void {
  fault(error);
  try {
    answer();
  } catch (again) {
    fault(again);
  }
}

function failStream(call: WritableCall): void {
  if (!call.cancelled) call.emit("error", faultStatus);
}

/** A call with one response (unary or client streaming): the handler's answer, or its error as a status. */
async function runUnary(
  ctx: GrpcHandlerContext,
  call: ServerUnaryCall<unknown, unknown> | ServerReadableStream<unknown, unknown>,
  callback: sendUnaryData<unknown>,
  intercept: (ctx: GrpcHandlerContext, run: () => Promise<void>) => Promise<void>,
  answer: () => unknown,
): Promise<void> {
  let response: unknown;
  let failure: { error: unknown } | undefined;
  try {
    await intercept(ctx, async () => {
      response = toMessage(ctx.method.output, await answer());
    });
  } catch (error) {
    failure = { error };
  }
  if (failure === undefined) {
    ctx.dispose();
    sendHeadersIfSet(call, ctx);
    callback(null, response, ctx.takeTrailerMetadata());
  } else {
    ctx.abort(failure.error);
    callback(toGrpcStatus(failure.error));
  }
}

function sendHeadersIfSet(
  call: ServerUnaryCall<unknown, unknown> | ServerReadableStream<unknown, unknown>,
  ctx: GrpcHandlerContext,
): void {
  const headers = ctx.takeResponseMetadata();
  if (Object.keys(headers.getMap()).length > 0) call.sendMetadata(headers);
}

type WritableCall = ServerWritableStream<unknown, unknown> | ServerDuplexStream<unknown, unknown>;

/**
 * Drives a response stream: headers go out as soon as the handler has started (clients such as
 * NanoPing's Go guide block on them before the first message), writes wait for `drain` so a slow
 * reader holds the producer back instead of growing a buffer, and the handler's iterator is closed
 * (its `finally` runs) however the call ends. The `drain` and abort listeners are set once per
 * stream, so waiting for `drain` (every 16 messages or so, grpc-js's buffer) costs one promise.
 */
async function runStream(
  ctx: GrpcHandlerContext,
  call: WritableCall,
  intercept: (ctx: GrpcHandlerContext, run: () => Promise<void>) => Promise<void>,
  start: () => AsyncIterable<unknown>,
): Promise<void> {
  const output = ctx.method.output;
  const signal = ctx.signal;
  let wake: (() => void) | undefined;
  const resume = () => {
    const resolve = wake;
    wake = undefined;
    resolve?.();
  };
  const drained = (resolve: () => void) => {
    wake = resolve;
  };
  try {
    call.on("drain", resume);
    signal.addEventListener("abort", resume);
    await intercept(ctx, async () => {
      const iterator = start()[Symbol.asyncIterator]();
      try {
        const first = iterator.next();
        call.sendMetadata(ctx.takeResponseMetadata());
        for (let step = await first; !step.done; step = await iterator.next()) {
          if (signal.aborted) break;
          if (!call.write(toMessage(output, step.value))) {
            if (!signal.aborted) await new Promise<void>(drained);
            if (signal.aborted) break;
          }
        }
      } finally {
        await iterator.return?.();
      }
    });
    ctx.dispose();
    if (signal.aborted) return;
    call.end(ctx.takeTrailerMetadata());
  } catch (error) {
    ctx.abort(error);
    if (!call.cancelled) call.emit("error", toGrpcStatus(error));
  } finally {
    call.off("drain", resume);
    signal.removeEventListener("abort", resume);
  }
}

async function* readRequests<T>(
  call: ServerReadableStream<unknown, unknown> | ServerDuplexStream<unknown, unknown>,
  input: DescMessage,
  guard: GuardOptions | undefined,
  signal: AbortSignal,
): AsyncGenerator<T> {
  // destroyOnReturn: false — a plain `for await` destroys the duplex when reading ends, which would
  // also kill the response side before the status is sent.
  const messages = (call as unknown as Readable).iterator({ destroyOnReturn: false }) as AsyncIterable<T>;
  for await (const message of messages) {
    if (signal.aborted) return;
    yield checkRequest(input, message, guard);
  }
}
