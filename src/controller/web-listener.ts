import {
  createServer as createHttpServer,
  type IncomingMessage,
  type Server,
  type ServerResponse,
} from "node:http";
import {
  createSecureServer,
  type Http2SecureServer,
  type Http2ServerRequest,
  type Http2ServerResponse,
} from "node:http2";
import type { AddressInfo, Socket } from "node:net";
import { type ConnectRouter, createContextValues } from "@connectrpc/connect";
import { connectNodeAdapter } from "@connectrpc/connect-node";
import { formatHostPort, isLoopbackHost, parseHostPort } from "../base/address.ts";
import { CorralError } from "../base/errors.ts";
import { defaults } from "../defaults.ts";
import type { ControllerMetrics } from "../observability/metrics.ts";
import { peerKey } from "../rpc/call-chain.ts";
import { defaultWebRoot, serveStatic } from "./web-static.ts";

export interface WebListenerOptions {
  readonly address: string;
  readonly routes: (router: ConnectRouter) => void;
  readonly metrics: ControllerMetrics;
  readonly isHealthy: () => boolean;
  /**
   * Used when the address is not loopback: then the web listener speaks HTTPS only, HTTP/2 to browsers
   * (one connection carries every stream a page opens) and HTTP/1.1 to clients without it.
   */
  readonly tls: { readonly certificatePem: string; readonly privateKeyPem: string };
  /** The built dashboard (`npm run build:web`); a page saying how to build it when absent. */
  readonly webRoot?: string;
  /** Answers requests before the dashboard's files (the one-line join's routes); false passes them on. */
  readonly extraRoutes?: (
    request: IncomingMessage | Http2ServerRequest,
    response: ServerResponse | Http2ServerResponse,
  ) => boolean;
}

/**
 * The web listener: the dashboard's files, gRPC-Web and Connect for it (the same service
 * implementations as the gRPC listeners), `/metrics` for Prometheus and `/healthz` for probes.
 */
export class WebListener implements AsyncDisposable {
  readonly #server: Server | Http2SecureServer;
  readonly #secure: boolean;
  /** TLS connections, HTTP/1.1 and HTTP/2 alike: cut off when the grace period ends. */
  readonly #sockets = new Set<Socket>();
  #address = "";

  private constructor(server: Server | Http2SecureServer, secure: boolean) {
    this.#server = server;
    this.#secure = secure;
  }

  static async start(options: WebListenerOptions): Promise<WebListener> {
    const { host, port } = parseHostPort(options.address, "web.address");
    const rpc = connectNodeAdapter({
      routes: options.routes,
      requireConnectProtocolHeader: false,
      // The call log, stream limits and audit name the caller's address, as on the gRPC listeners.
      contextValues: (request) =>
        createContextValues().set(
          peerKey,
          formatHostPort({ host: request.socket.remoteAddress ?? "", port: request.socket.remotePort ?? 0 }),
        ),
    });
    const files = serveStatic(options.webRoot ?? defaultWebRoot);
    const handle = (
      request: IncomingMessage | Http2ServerRequest,
      response: ServerResponse | Http2ServerResponse,
    ) => {
      const path = (request.url ?? "/").split("?")[0];
      if (request.method === "GET" && path === "/metrics") return serveMetrics(options.metrics, response);
      if (request.method === "GET" && path === "/healthz") return serveHealth(options.isHealthy(), response);
      if (options.extraRoutes?.(request, response) === true) return;
      if (files(request, response)) return;
      rpc(request, response);
    };
    const secure = !isLoopbackHost(host);
    let server: Server | Http2SecureServer;
    if (secure) {
      server = createSecureServer(
        {
          cert: options.tls.certificatePem,
          key: options.tls.privateKeyPem,
          allowHTTP1: true,
          // The per-principal stream limit is counted by the call chain (connect-routes.ts); this bounds one connection.
          settings: { maxConcurrentStreams: defaults.rpc.maxConcurrentStreamsPerConnection },
        },
        handle,
      );
    } else {
      const plain = createHttpServer(handle);
      plain.headersTimeout = 30_000;
      plain.requestTimeout = 0; // streams are long-lived; idle connections are closed by keepAliveTimeout
      server = plain;
    }
    const listener = new WebListener(server, secure);
    if (secure) {
      server.on("secureConnection", (socket: Socket) => {
        listener.#sockets.add(socket);
        socket.once("close", () => listener.#sockets.delete(socket));
      });
    }
    await new Promise<void>((resolve, reject) => {
      server.once("error", (error) =>
        reject(
          new CorralError("UNAVAILABLE", `cannot listen on ${options.address}: ${error.message}`, {
            cause: error,
          }),
        ),
      );
      server.listen(port, host, () => resolve());
    });
    const bound = server.address() as AddressInfo;
    listener.#address = formatHostPort({ host, port: bound.port });
    return listener;
  }

  get url(): string {
    return `${this.#secure ? "https" : "http"}://${this.#address}`;
  }

  get address(): string {
    return this.#address;
  }

  async close(graceMs = 5_000): Promise<void> {
    const server = this.#server;
    if (!server.listening) return;
    await new Promise<void>((resolve) => {
      const force = setTimeout(() => {
        if ("closeAllConnections" in server) server.closeAllConnections();
        for (const socket of this.#sockets) socket.destroy();
      }, graceMs);
      force.unref();
      server.close(() => {
        clearTimeout(force);
        resolve();
      });
      if ("closeIdleConnections" in server) server.closeIdleConnections();
    });
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.close();
  }
}

type AnyResponse = ServerResponse | Http2ServerResponse;

/** `/metrics`: the controller's Prometheus registry. */
function serveMetrics(metrics: ControllerMetrics, response: AnyResponse): void {
  metrics.registry.metrics().then(
    (text) => {
      response.writeHead(200, { "content-type": metrics.registry.contentType });
      response.end(text);
    },
    (error: unknown) => {
      response.writeHead(500, { "content-type": "text/plain" });
      response.end(`cannot collect metrics: ${(error as Error).message}\n`);
    },
  );
}

/** `/healthz`: 503 once the controller drains, so a load balancer stops sending. */
function serveHealth(healthy: boolean, response: AnyResponse): void {
  response.writeHead(healthy ? 200 : 503, { "content-type": "text/plain" });
  response.end(healthy ? "ok\n" : "draining\n");
}
