import {
  createServer as createHttpServer,
  type IncomingMessage,
  type Server,
  type ServerResponse,
} from "node:http";
import { createServer as createHttpsServer } from "node:https";
import type { AddressInfo } from "node:net";
import type { ConnectRouter } from "@connectrpc/connect";
import { connectNodeAdapter } from "@connectrpc/connect-node";
import { formatHostPort, isLoopbackHost, parseHostPort } from "../core/address.ts";
import { CorralError } from "../core/errors.ts";
import type { ControllerMetrics } from "../observability/metrics.ts";

export interface WebListenerOptions {
  readonly address: string;
  readonly routes: (router: ConnectRouter) => void;
  readonly metrics: ControllerMetrics;
  readonly isHealthy: () => boolean;
  /** Used when the address is not loopback: then the web listener speaks HTTPS only. */
  readonly tls: { readonly certificatePem: string; readonly privateKeyPem: string };
}

/**
 * The web listener: gRPC-Web and Connect for the dashboard (the same service implementations as the
 * gRPC listeners), `/metrics` for Prometheus and `/healthz` for probes.
 */
export class WebListener implements AsyncDisposable {
  readonly #server: Server;
  readonly #secure: boolean;
  #address = "";

  private constructor(server: Server, secure: boolean) {
    this.#server = server;
    this.#secure = secure;
  }

  static async start(options: WebListenerOptions): Promise<WebListener> {
    const { host, port } = parseHostPort(options.address, "web.address");
    const rpc = connectNodeAdapter({ routes: options.routes, requireConnectProtocolHeader: false });
    const handle = (request: IncomingMessage, response: ServerResponse) => {
      const path = (request.url ?? "/").split("?")[0];
      if (request.method === "GET" && path === "/metrics") {
        options.metrics.registry.metrics().then(
          (text) => {
            response.writeHead(200, { "content-type": options.metrics.registry.contentType });
            response.end(text);
          },
          (error: unknown) => {
            response.writeHead(500, { "content-type": "text/plain" });
            response.end(`cannot collect metrics: ${(error as Error).message}\n`);
          },
        );
        return;
      }
      if (request.method === "GET" && path === "/healthz") {
        const healthy = options.isHealthy();
        response.writeHead(healthy ? 200 : 503, { "content-type": "text/plain" });
        response.end(healthy ? "ok\n" : "draining\n");
        return;
      }
      rpc(request, response);
    };
    const secure = !isLoopbackHost(host);
    const server = secure
      ? createHttpsServer({ cert: options.tls.certificatePem, key: options.tls.privateKeyPem }, handle)
      : createHttpServer(handle);
    server.headersTimeout = 30_000;
    server.requestTimeout = 0; // streams are long-lived; idle connections are closed by keepAliveTimeout
    const listener = new WebListener(server, secure);
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
    if (!this.#server.listening) return;
    await new Promise<void>((resolve) => {
      const force = setTimeout(() => this.#server.closeAllConnections(), graceMs);
      force.unref();
      this.#server.close(() => {
        clearTimeout(force);
        resolve();
      });
      this.#server.closeIdleConnections();
    });
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.close();
  }
}
