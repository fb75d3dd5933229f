import type { DescService } from "@bufbuild/protobuf";
import type { ServiceImpl } from "@connectrpc/connect";
import { type ChannelOptions, Server, type ServerCredentials } from "@grpc/grpc-js";
import { parseDuration } from "../base/duration.ts";
import { CorralError } from "../base/errors.ts";
import { defaults } from "../defaults.ts";
import type { Logger } from "../observability/logger.ts";
import { type CallInterceptor, type MountedService, mountService } from "./grpc-adapter.ts";
import type { GuardOptions } from "./request-guard.ts";
import { limitStreams, StreamLimits } from "./stream-limits.ts";

export interface RpcServerOptions {
  readonly maxReceiveMessageBytes?: number;
  readonly maxSendMessageBytes?: number;
  readonly maxConcurrentStreamsPerConnection?: number;
  readonly keepaliveTime?: string;
  readonly keepaliveTimeout?: string;
  readonly keepaliveMinPingInterval?: string;
  readonly interceptors?: readonly CallInterceptor[];
  /**
   * Open-stream limits, shared by the listeners that pass the same instance (so a principal's limit
   * counts its streams on all of them); a server given none counts its own, with the defaults.
   */
  readonly streamLimits?: StreamLimits;
  /** Faults of the RPC layer (answered INTERNAL, the process goes on) are logged here, with their stack. */
  readonly logger?: Logger;
  /** Bounds on every request, checked before its handler (defaults: request-guard.ts). */
  readonly requestGuard?: GuardOptions;
}

/** Tells servers apart in the per-connection counts of a shared StreamLimits. */
let serverCount = 0;

/**
 * One grpc-js server, possibly bound to several listeners (the TLS cluster listener and the loopback
 * bridge share services; interceptors tell them apart by the call's transport).
 */
export class RpcServer implements AsyncDisposable {
  readonly #server: Server;
  readonly #mounted: MountedService[] = [];
  readonly #interceptors: readonly CallInterceptor[];
  readonly #onFault: ((error: unknown, method: string) => void) | undefined;
  readonly #requestGuard: GuardOptions | undefined;
  #closed = false;

  constructor(options: RpcServerOptions = {}) {
    const rpc = defaults.rpc;
    const channelOptions: ChannelOptions = {
      "grpc.max_receive_message_length": options.maxReceiveMessageBytes ?? rpc.maxReceiveMessageBytes,
      "grpc.max_send_message_length": options.maxSendMessageBytes ?? rpc.maxSendMessageBytes,
      "grpc.max_concurrent_streams":
        options.maxConcurrentStreamsPerConnection ?? rpc.maxConcurrentStreamsPerConnection,
      "grpc.keepalive_time_ms": parseDuration(options.keepaliveTime ?? rpc.keepaliveTime, "keepaliveTime"),
      "grpc.keepalive_timeout_ms": parseDuration(
        options.keepaliveTimeout ?? rpc.keepaliveTimeout,
        "keepaliveTimeout",
      ),
      "grpc.http2.min_ping_interval_without_data_ms": parseDuration(
        options.keepaliveMinPingInterval ?? rpc.keepaliveMinPingInterval,
        "keepaliveMinPingInterval",
      ),
      "grpc.keepalive_permit_without_calls": 1,
      // Responses are gzipped for clients that announce gzip in grpc-accept-encoding.
      "grpc.default_compression_algorithm": 2,
    };
    this.#server = new Server(channelOptions);
    // Innermost, so the caller is already identified; every listener has it, so no listener serves
    // streams without bounds.
    this.#interceptors = [
      ...(options.interceptors ?? []),
      limitStreams(options.streamLimits ?? new StreamLimits(), `server-${++serverCount}`),
    ];
    this.#requestGuard = options.requestGuard;
    const logger = options.logger;
    this.#onFault =
      logger === undefined
        ? undefined
        : (error, method) =>
            logger.error({ method, err: error }, "fault answering a call; answered INTERNAL");
  }

  add<S extends DescService>(service: S, impl: Partial<ServiceImpl<S>>): this {
    if (this.#mounted.some((m) => m.service.typeName === service.typeName)) {
      throw new CorralError("ALREADY_EXISTS", `service ${service.typeName} is already mounted`);
    }
    const mounted = mountService(service, impl, {
      interceptors: this.#interceptors,
      ...(this.#onFault === undefined ? {} : { onFault: this.#onFault }),
      ...(this.#requestGuard === undefined ? {} : { requestGuard: this.#requestGuard }),
    });
    this.#server.addService(mounted.definition, mounted.implementation);
    this.#mounted.push(mounted);
    return this;
  }

  /** The services mounted so far, for reflection and health. */
  get services(): readonly DescService[] {
    return this.#mounted.map((m) => m.service);
  }

  /** Binds a listener and returns the port it got (useful with port 0). */
  listen(address: string, credentials: ServerCredentials): Promise<number> {
    return new Promise((resolve, reject) => {
      this.#server.bindAsync(address, credentials, (error, port) => {
        if (error) {
          reject(
            new CorralError("UNAVAILABLE", `cannot listen on ${address}: ${error.message}`, { cause: error }),
          );
        } else resolve(port);
      });
    });
  }

  /**
   * Two-phase stop: refuse new calls and let in-flight ones finish, then after `graceMs` cut off
   * whatever is still running (streams that never end on their own, such as watches).
   */
  async close(graceMs = parseDuration(defaults.controller.shutdownGrace)): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    await new Promise<void>((resolve) => {
      const force = setTimeout(() => {
        this.#server.forceShutdown();
        resolve();
      }, graceMs);
      force.unref();
      this.#server.tryShutdown(() => {
        clearTimeout(force);
        resolve();
      });
    });
  }

  /** Cuts off every call now. */
  forceClose(): void {
    this.#closed = true;
    this.#server.forceShutdown();
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.close();
  }
}
