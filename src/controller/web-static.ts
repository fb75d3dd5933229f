import { createReadStream } from "node:fs";
import { readFile, stat } from "node:fs/promises";
import type { IncomingMessage, ServerResponse } from "node:http";
import type { Http2ServerRequest, Http2ServerResponse } from "node:http2";
import { extname, join, normalize, sep } from "node:path";
import { promisify } from "node:util";
import { gzip } from "node:zlib";
import { packagePath } from "../base/package-root.ts";

const gzipAsync = promisify(gzip);
const compressible = /^(text\/|application\/json|image\/svg)/;
const maxGzipped = 64;

/** Where `npm run build:web` (vite) writes the dashboard. */
export const defaultWebRoot = packagePath("web-dist");

const contentTypes: Readonly<Record<string, string>> = {
  ".html": "text/html; charset=utf-8",
  ".js": "text/javascript; charset=utf-8",
  ".mjs": "text/javascript; charset=utf-8",
  ".css": "text/css; charset=utf-8",
  ".json": "application/json",
  ".svg": "image/svg+xml",
  ".png": "image/png",
  ".ico": "image/x-icon",
  ".woff2": "font/woff2",
  ".txt": "text/plain; charset=utf-8",
  ".map": "application/json",
};

/** Paths that look like an RPC (`/package.Service/Method`) are never answered with files. */
const rpcPath = /^\/[A-Za-z_][\w]*(\.[A-Za-z_][\w]*)+\/[A-Za-z_]\w*$/;

const securityHeaders = {
  "x-content-type-options": "nosniff",
  "referrer-policy": "no-referrer",
  "x-frame-options": "DENY",
  // The page talks only to this origin (its API is on the same listener).
  "content-security-policy":
    "default-src 'self'; connect-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; frame-ancestors 'none'",
} as const;

const missingBuildPage = (root: string) => `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>corral dashboard not built</title>
<style>body{font:16px/1.5 system-ui,sans-serif;margin:3rem;max-width:44rem;color:#1d2430}
code,pre{background:#eef1f5;padding:.1rem .3rem;border-radius:4px}</style></head>
<body><h1>The dashboard is not built yet</h1>
<p>This controller serves its API here, but found no dashboard files in <code>${escapeHtml(root)}</code>.</p>
<p>Build them once, in the corral checkout, then reload this page:</p>
<pre>npm run build:web</pre>
<p>(<code>npm install</code> builds them too.)</p></body></html>
`;

function answer(
  response: ServerResponse | Http2ServerResponse,
  status: number,
  contentType: string,
  body: string,
): void {
  // Both kinds of response take the same writeHead; TypeScript cannot call a union of overloads.
  (response as ServerResponse).writeHead(status, { ...securityHeaders, "content-type": contentType });
  response.end(body);
}

function escapeHtml(text: string): string {
  return text.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
}

/** Gzipped text files, made once per file version (the dashboard is a handful of files). */
function gzipCache(): (file: string, mtimeMs: number) => Promise<Buffer> {
  const gzipped = new Map<string, { mtimeMs: number; body: Buffer }>();
  return async (file, mtimeMs) => {
    const cached = gzipped.get(file);
    if (cached !== undefined && cached.mtimeMs === mtimeMs) return cached.body;
    const body = await gzipAsync(await readFile(file));
    if (gzipped.size >= maxGzipped) gzipped.clear();
    gzipped.set(file, { mtimeMs, body });
    return body;
  };
}

/** One file, gzipped when the client takes it and it is text worth compressing; rejects if it is not a file. */
async function sendStaticFile(options: {
  readonly request: IncomingMessage | Http2ServerRequest;
  readonly response: ServerResponse | Http2ServerResponse;
  readonly file: string;
  readonly head: boolean;
  readonly immutable: boolean;
  readonly gzipOf: (file: string, mtimeMs: number) => Promise<Buffer>;
}): Promise<void> {
  const { request, response, file, head, immutable } = options;
  const info = await stat(file);
  if (!info.isFile()) throw Object.assign(new Error("not a file"), { code: "ENOENT" });
  const type = contentTypes[extname(file)] ?? "application/octet-stream";
  const compress =
    info.size >= 1024 &&
    compressible.test(type) &&
    /\bgzip\b/.test(String(request.headers["accept-encoding"] ?? ""));
  const body = compress ? await options.gzipOf(file, info.mtimeMs) : undefined;
  response.writeHead(200, {
    ...securityHeaders,
    "content-type": type,
    "content-length": body?.length ?? info.size,
    "cache-control": immutable ? "public, max-age=31536000, immutable" : "no-cache",
    "last-modified": info.mtime.toUTCString(),
    vary: "accept-encoding",
    ...(body === undefined ? {} : { "content-encoding": "gzip" }),
  });
  if (head) {
    response.end();
    return;
  }
  if (body !== undefined) {
    response.end(body);
    return;
  }
  const stream = createReadStream(file);
  stream.on("error", () => response.destroy());
  stream.pipe(response);
}

/**
 * The dashboard's static files: `/` and every path without a file extension get index.html (the page
 * routes itself), hashed files under /assets/ are cached for a year, index.html never. Returns false
 * when the request is not for a file (an RPC), so the caller passes it on.
 */
export function serveStatic(
  root: string,
): (
  request: IncomingMessage | Http2ServerRequest,
  response: ServerResponse | Http2ServerResponse,
) => boolean {
  const base = normalize(root.endsWith(sep) ? root : root + sep);
  const gzipOf = gzipCache();
  const sendFile = (
    request: IncomingMessage | Http2ServerRequest,
    response: ServerResponse | Http2ServerResponse,
    file: string,
    head: boolean,
    immutable: boolean,
  ) => sendStaticFile({ request, response, file, head, immutable, gzipOf });

  return (request, response) => {
    if (request.method !== "GET" && request.method !== "HEAD") return false;
    let path: string;
    try {
      path = decodeURIComponent((request.url ?? "/").split("?")[0] ?? "/");
    } catch {
      path = "/";
    }
    if (rpcPath.test(path)) return false;
    const head = request.method === "HEAD";
    const index = join(base, "index.html");
    const fallback = () =>
      sendFile(request, response, index, head, false).catch(() => {
        answer(response, 503, "text/html; charset=utf-8", head ? "" : missingBuildPage(base));
      });
    const file = normalize(join(base, path));
    // Outside the root (`..`), or a route of the page rather than a file: the page itself.
    if (!file.startsWith(base) || path === "/" || extname(path) === "") {
      void fallback();
      return true;
    }
    sendFile(request, response, file, head, path.startsWith("/assets/")).catch(() => {
      answer(
        response,
        404,
        "text/plain; charset=utf-8",
        head ? "" : `${path} is not a file of the dashboard\n`,
      );
    });
    return true;
  };
}
