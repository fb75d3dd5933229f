import assert from "node:assert/strict";
import { get } from "node:https";
import { after, before, test } from "node:test";
import { createClient } from "@connectrpc/connect";
import { createGrpcWebTransport } from "@connectrpc/connect-node";
import { NodesService } from "../../src/gen/corral/v1/nodes_pb.ts";
import { SessionService } from "../../src/gen/corral/v1/session_pb.ts";
import { Role } from "../../src/gen/corral/v1/tokens_pb.ts";
import { startTestController, type TestController } from "../helpers/controller.ts";

let cluster: TestController;
let token = "";
let url = "";

before(async () => {
  // Not a loopback address, so the web listener speaks TLS; the test still talks to it over loopback.
  cluster = await startTestController({ web: { address: "0.0.0.0:0" } });
  url = `https://127.0.0.1:${cluster.webPort}`;
  ({ token } = await cluster.controller.context.tokens.create({
    role: "viewer",
    ttlMs: 600_000,
    uses: 0,
    description: "tls test",
    createdBy: "test",
    caFingerprint: cluster.controller.ca.fingerprint,
  }));
});

after(async () => {
  await cluster?.close();
});

test("off loopback the web listener is HTTPS, and browsers get HTTP/2: many streams on one connection", async () => {
  assert.match(cluster.controller.webUrl, /^https:\/\//);
  const transport = createGrpcWebTransport({
    baseUrl: url,
    httpVersion: "2",
    nodeOptions: { ca: cluster.controller.ca.certificatePem, servername: "localhost" },
    interceptors: [
      (next) => (request) => {
        request.header.set("authorization", `Bearer ${token}`);
        return next(request);
      },
    ],
  });
  assert.equal((await createClient(SessionService, transport).whoAmI({})).role, Role.VIEWER);
  // Eight watches at once: more than the six HTTP/1.1 connections a browser allows one origin.
  const stop = new AbortController();
  const firsts = await Promise.all(
    Array.from({ length: 8 }, async () => {
      for await (const message of createClient(NodesService, transport).watchNodes(
        {},
        { signal: stop.signal },
      ))
        return message;
      return undefined;
    }),
  );
  stop.abort();
  assert.equal(firsts.filter((m) => m !== undefined).length, 8);
});

test("HTTP/1.1 clients still get the page over TLS", async () => {
  const { status, body } = await new Promise<{ status: number; body: string }>((resolve, reject) => {
    get(`${url}/nodes`, { ca: cluster.controller.ca.certificatePem, servername: "localhost" }, (response) => {
      let body = "";
      response.on("data", (chunk: Buffer) => {
        body += chunk.toString();
      });
      response.on("end", () => resolve({ status: response.statusCode ?? 0, body }));
    }).on("error", reject);
  });
  // The built page, or the page that says how to build it.
  assert.ok(status === 200 || status === 503, `status ${status}`);
  assert.match(body, /<html|<!doctype/i);
});
