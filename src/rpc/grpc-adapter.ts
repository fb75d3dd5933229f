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
import type {
  MethodDefinition,
  ServerDuplexStream,
  ServerReadableStream,
  ServerUnaryCall,
  ServerWritableStream,
  ServiceDefinition,
  sendUnaryData,
  UntypedHandleCall,
  UntypedServiceImplementation,
} from "@grpc/grpc-js";
import { CorralError } from "../core/errors.ts";
import { GrpcHandlerContext } from "./call-context.ts";
import { toGrpcStatus } from "./status.ts";

/**
 * Runs around a whole call (for a stream: until its last message is written). It may throw before
 * calling `next` to refuse the call (authorization), or observe the outcome (logging, metrics).
 */
export type CallInterceptor = (ctx: GrpcHandlerContext, next: () => Promise<void>) => Promise<void>;

export interface MountOptions {
  readonly interceptors?: readonly CallInterceptor[];
  /** Fresh per-call context values (e.g. the peer's identity is added by an interceptor). */
  readonly contextValues?: () => ContextValues;
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
    definition[method.localName] = methodDefinition(service, method);
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

function methodDefinition(service: DescService, method: DescMethod): MethodDefinition<unknown, unknown> {
  const input = method.input;
  const output = method.output;
  return {
    path: `/${service.typeName}/${method.name}`,
    requestStream: method.methodKind === "client_streaming" || method.methodKind === "bidi_streaming",
    responseStream: method.methodKind === "server_streaming" || method.methodKind === "bidi_streaming",
    originalName: method.localName,
    requestSerialize: (message: unknown) => asBuffer(toBinary(input, message as MessageShape<DescMessage>)),
    requestDeserialize: (bytes: Buffer) => fromBinary(input, bytes),
    responseSerialize: (message: unknown) => asBuffer(toBinary(output, message as MessageShape<DescMessage>)),
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
  const newContext = (call: ConstructorParameters<typeof GrpcHandlerContext>[0]) =>
    new GrpcHandlerContext(call, method, options.contextValues?.());
  const intercept = (ctx: GrpcHandlerContext, run: () => Promise<void>): Promise<void> => {
    let next = run;
    for (let i = interceptors.length - 1; i >= 0; i--) {
      const interceptor = interceptors[i] as CallInterceptor;
      const inner = next;
      next = () => interceptor(ctx, inner);
    }
    return next();
  };
  switch (method.methodKind) {
    case "unary":
      return (call: ServerUnaryCall<unknown, unknown>, callback: sendUnaryData<unknown>) => {
        const ctx = newContext(call);
        runUnary(ctx, call, callback, intercept, () => handler(call.request as never, ctx as never));
      };
    case "server_streaming":
      return (call: ServerWritableStream<unknown, unknown>) => {
        const ctx = newContext(call);
        void runStream(
          ctx,
          call,
          intercept,
          () => handler(call.request as never, ctx as never) as AsyncIterable<unknown>,
        );
      };
    case "client_streaming":
      return (call: ServerReadableStream<unknown, unknown>, callback: sendUnaryData<unknown>) => {
        const ctx = newContext(call);
        runUnary(ctx, call, callback, intercept, () =>
          handler(readRequests(call, ctx.signal) as never, ctx as never),
        );
      };
    case "bidi_streaming":
      return (call: ServerDuplexStream<unknown, unknown>) => {
        const ctx = newContext(call);
        void runStream(
          ctx,
          call,
          intercept,
          () => handler(readRequests(call, ctx.signal) as never, ctx as never) as AsyncIterable<unknown>,
        );
      };
  }
}

/** A call with one response (unary or client streaming): the handler's answer, or its error as a status. */
function runUnary(
  ctx: GrpcHandlerContext,
  call: ServerUnaryCall<unknown, unknown> | ServerReadableStream<unknown, unknown>,
  callback: sendUnaryData<unknown>,
  intercept: (ctx: GrpcHandlerContext, run: () => Promise<void>) => Promise<void>,
  answer: () => unknown,
): void {
  let response: unknown;
  intercept(ctx, async () => {
    response = toMessage(ctx.method.output, await answer());
  }).then(
    () => {
      ctx.dispose();
      sendHeadersIfSet(call, ctx);
      callback(null, response, ctx.takeTrailerMetadata());
    },
    (error: unknown) => {
      ctx.abort(error);
      callback(toGrpcStatus(error));
    },
  );
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
  signal: AbortSignal,
): AsyncGenerator<T> {
  // destroyOnReturn: false — a plain `for await` destroys the duplex when reading ends, which would
  // also kill the response side before the status is sent.
  const messages = (call as unknown as Readable).iterator({ destroyOnReturn: false }) as AsyncIterable<T>;
  for await (const message of messages) {
    if (signal.aborted) return;
    yield message;
  }
}
