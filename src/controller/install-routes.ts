import { createHash, X509Certificate } from "node:crypto";
import { createReadStream } from "node:fs";
import type { IncomingMessage, ServerResponse } from "node:http";
import type { Http2ServerRequest, Http2ServerResponse } from "node:http2";
import { CorralError } from "../base/errors.ts";
import type { Logger } from "../observability/logger.ts";
import type { InstallPackageSource } from "./install-package.ts";
import { renderInstallScript } from "./install-script.ts";

type Request = IncomingMessage | Http2ServerRequest;
type Response = ServerResponse | Http2ServerResponse;

export interface InstallRoutesOptions {
  readonly packages: InstallPackageSource;
  /** The presenting CA's certificate (its DER's sha256 is the fingerprint in join tokens). */
  readonly caPem: () => string;
  readonly clusterAddress: string;
  readonly controllerName: string;
  readonly version: string;
  /** Resolves when a node token would be admitted now; a CorralError saying why not otherwise. */
  readonly checkNodeToken: (token: string) => Promise<void>;
  /** The web listener's URL as nodes reach it, and its certificate (HTTPS) or none (loopback HTTP). */
  readonly web: () => { readonly url: string; readonly certificatePem?: string };
  readonly logger: Logger;
}

/** curl's `--pinnedpubkey` value for a certificate: sha256 of its SubjectPublicKeyInfo, base64. */
export function pinnedPublicKey(certificatePem: string): string {
  const spki = new X509Certificate(certificatePem).publicKey.export({ type: "spki", format: "der" });
  return `sha256//${createHash("sha256").update(spki).digest("base64")}`;
}

/** The curl options that reach the web listener safely: its exact key over HTTPS, nothing on loopback. */
export function curlTlsOptions(web: { readonly certificatePem?: string }): string {
  // -k only drops the CA check that curl cannot do (it does not know corral's CA); the pin then
  // accepts exactly this listener's key, so this is not trust on first use.
  return web.certificatePem === undefined ? "" : `-k --pinnedpubkey ${pinnedPublicKey(web.certificatePem)}`;
}

/** The first part of the one-line join, up to `| sh -s -- --token <token>`. */
export function installCommand(web: { readonly url: string; readonly certificatePem?: string }): string {
  const tls = curlTlsOptions(web);
  return `curl -fsSL${tls === "" ? "" : ` ${tls}`} ${web.url}/install.sh`;
}

function send(response: Response, status: number, type: string, body: string | Buffer): void {
  (response as ServerResponse).writeHead(status, {
    "content-type": type,
    "cache-control": "no-store",
    "x-content-type-options": "nosniff",
  });
  response.end(body);
}

function refuse(response: Response, error: unknown): void {
  const status =
    error instanceof CorralError
      ? ({ UNAVAILABLE: 503, UNAUTHENTICATED: 401, PERMISSION_DENIED: 403, NOT_FOUND: 404 }[
          error.code as string
        ] ?? 400)
      : 500;
  send(response, status, "text/plain; charset=utf-8", `${(error as Error).message}\n`);
}

/**
 * `GET /install.sh` (the script, with the cluster address and the package's digest in it),
 * `GET /corral.tgz` (the package), `GET /ca.pem` (the CA the token pins) and
 * `POST /install/token-check` (whether a join token would be admitted; the token in a Bearer header).
 * Returns false for every other request.
 */
export function installRoutes(
  options: InstallRoutesOptions,
): (request: Request, response: Response) => boolean {
  return (request, response) => {
    const path = (request.url ?? "/").split("?")[0];
    const method = request.method ?? "GET";
    if (path === "/ca.pem" && (method === "GET" || method === "HEAD")) {
      send(response, 200, "application/x-pem-file", method === "HEAD" ? "" : options.caPem());
      return true;
    }
    if (path === "/install.sh" && method === "GET") {
      options.packages.current().then(
        (pkg) => {
          const web = options.web();
          send(
            response,
            200,
            "text/x-shellscript; charset=utf-8",
            renderInstallScript({
              baseUrl: web.url,
              curlTls: curlTlsOptions(web),
              clusterAddress: options.clusterAddress,
              packageSha256: pkg.sha256,
              version: options.version,
              controllerName: options.controllerName,
            }),
          );
        },
        (error: unknown) => refuse(response, error),
      );
      return true;
    }
    if (path === "/corral.tgz" && (method === "GET" || method === "HEAD")) {
      options.packages.current().then(
        (pkg) => {
          (response as ServerResponse).writeHead(200, {
            "content-type": "application/gzip",
            "content-length": pkg.size,
            "cache-control": "no-store",
          });
          if (method === "HEAD") {
            response.end();
            return;
          }
          const stream = createReadStream(pkg.path);
          stream.on("error", () => response.destroy());
          stream.pipe(response as ServerResponse);
        },
        (error: unknown) => refuse(response, error),
      );
      return true;
    }
    if (path === "/install/token-check" && method === "POST") {
      const token = /^Bearer\s+(\S+)$/i.exec(String(request.headers.authorization ?? ""))?.[1];
      if (token === undefined) {
        send(
          response,
          401,
          "text/plain; charset=utf-8",
          "send the join token as authorization: Bearer <token>\n",
        );
        return true;
      }
      options.checkNodeToken(token).then(
        () => {
          (response as ServerResponse).writeHead(204);
          response.end();
        },
        (error: unknown) => {
          options.logger.info({ err: (error as Error).message }, "install script: join token refused");
          refuse(response, error);
        },
      );
      return true;
    }
    return false;
  };
}
