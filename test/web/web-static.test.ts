import assert from "node:assert/strict";
import { mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { serveStatic } from "../../src/controller/web-static.ts";

/** serveStatic behind a plain HTTP server; what it passes on answers 418, as the RPC routes would. */
async function serve(root: string): Promise<{ server: Server; url: string }> {
  const files = serveStatic(root);
  const server = createServer((request, response) => {
    if (files(request, response)) return;
    response.writeHead(418);
    response.end("rpc");
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  return { server, url: `http://127.0.0.1:${(server.address() as AddressInfo).port}` };
}

const bigScript = `export const lines = ${JSON.stringify(Array.from({ length: 500 }, (_, i) => `line ${i}`))};`;

describe("the dashboard's static files", () => {
  let dir = "";
  let built: { server: Server; url: string };
  let missing: { server: Server; url: string };

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), "corral-web-static-"));
    await mkdir(join(dir, "built/assets"), { recursive: true });
    await writeFile(join(dir, "built/index.html"), "<!doctype html><title>corral</title>");
    await writeFile(join(dir, "built/assets/index-abc123.js"), "console.log(1)");
    await writeFile(join(dir, "built/assets/big-def456.js"), bigScript);
    await writeFile(join(dir, "secret.txt"), "outside the root");
    built = await serve(join(dir, "built"));
    missing = await serve(join(dir, "not-built"));
  });

  after(async () => {
    built.server.close();
    missing.server.close();
    await rm(dir, { recursive: true, force: true });
  });

  test("/ and the page's own routes answer index.html, never cached", async () => {
    for (const path of ["/", "/nodes", "/nodes/agent-1", "/requests?x=1"]) {
      const response = await fetch(built.url + path);
      assert.equal(response.status, 200, path);
      assert.match(response.headers.get("content-type") ?? "", /text\/html/);
      assert.equal(response.headers.get("cache-control"), "no-cache");
      assert.match(await response.text(), /<title>corral<\/title>/);
    }
  });

  test("hashed assets are cached for good; a missing file is 404, not the page", async () => {
    const asset = await fetch(`${built.url}/assets/index-abc123.js`);
    assert.equal(asset.status, 200);
    assert.match(asset.headers.get("content-type") ?? "", /javascript/);
    assert.match(asset.headers.get("cache-control") ?? "", /max-age=31536000, immutable/);
    assert.equal(await asset.text(), "console.log(1)");
    const gone = await fetch(`${built.url}/assets/index-old.js`);
    assert.equal(gone.status, 404);
    await gone.body?.cancel();
  });

  test("text files are sent gzipped to clients that take gzip", async () => {
    const zipped = await fetch(`${built.url}/assets/big-def456.js`, {
      headers: { "accept-encoding": "gzip" },
    });
    assert.equal(zipped.headers.get("content-encoding"), "gzip");
    assert.ok(Number(zipped.headers.get("content-length")) < bigScript.length / 2);
    assert.equal(await zipped.text(), bigScript);
    const plain = await fetch(`${built.url}/assets/big-def456.js`, {
      headers: { "accept-encoding": "identity" },
    });
    assert.equal(plain.headers.get("content-encoding"), null);
    assert.equal(await plain.text(), bigScript);
  });

  test("nothing outside the folder is served", async () => {
    for (const path of ["/../secret.txt", "/%2e%2e/secret.txt", "/assets/..%2f..%2fsecret.txt"]) {
      const response = await fetch(built.url + path);
      assert.doesNotMatch(await response.text(), /outside the root/, path);
    }
  });

  test("RPC paths and POSTs are passed on to the API", async () => {
    const get = await fetch(`${built.url}/corral.v1.NodesService/ListNodes`);
    assert.equal(get.status, 418);
    await get.body?.cancel();
    const post = await fetch(`${built.url}/corral.v1.NodesService/ListNodes`, { method: "POST", body: "" });
    assert.equal(post.status, 418);
    await post.body?.cancel();
  });

  test("without a build, the page says how to make one", async () => {
    const response = await fetch(`${missing.url}/nodes`);
    assert.equal(response.status, 503);
    const text = await response.text();
    assert.match(text, /npm run build:web/);
    assert.match(text, /not built/);
  });
});
