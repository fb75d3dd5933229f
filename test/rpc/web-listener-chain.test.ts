import assert from "node:assert/strict";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import type { DescService } from "@bufbuild/protobuf";
import { type Client, Code, ConnectError, createClient } from "@connectrpc/connect";
import { createGrpcWebTransport } from "@connectrpc/connect-node";
import { pino } from "pino";
import { resolveControllerConfig } from "../../src/controller/config.ts";
import { Controller } from "../../src/controller/controller.ts";
import { NodesService } from "../../src/gen/corral/v1/nodes_pb.ts";
import { eventually } from "../helpers/agent.ts";
import { plaintextClient } from "../helpers/clients.ts";

/**
 * The web listener's Connect calls run through the same chain as the gRPC listeners': they are counted
 * in /metrics and written to the call log like a gRPC call, refusals included.
 */

type LogLine = Record<string, unknown>;

const listNodes = "corral.v1.NodesService/ListNodes";
const watchNodes = "corral.v1.NodesService/WatchNodes";

describe("one interceptor chain for the web listener and the gRPC listeners", () => {
  const logged: LogLine[] = [];
  let dir = "";
  let controller: Controller;
  let viewer = "";

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), "corral-chain-"));
    const config = resolveControllerConfig(
      {
        http: { address: "127.0.0.1:0" },
        grpcBridge: { address: "127.0.0.1:0" },
        web: { address: "127.0.0.1:0" },
        shutdownGrace: "1s",
      },
      dir,
      { dataDir: dir },
      "test",
    );
    // The controller's own log, at debug: the level its call log writes successful calls at.
    const logger = pino(
      { level: "debug" },
      {
        write(line: string) {
          logged.push(JSON.parse(line) as LogLine);
        },
      },
    );
    controller = await Controller.start(config, logger);
    const { token } = await controller.context.tokens.create({
      role: "viewer",
      ttlMs: 600_000,
      uses: 0,
      description: "chain test",
      createdBy: "test",
      caFingerprint: controller.ca.fingerprint,
    });
    viewer = token;
  });

  after(async () => {
    await controller?.close();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  /** A dashboard-like client: gRPC-Web to the web listener, with a bearer token when given one. */
  function webClient<S extends DescService>(service: S, token?: string): Client<S> {
    return createClient(
      service,
      createGrpcWebTransport({
        baseUrl: controller.webUrl,
        httpVersion: "1.1",
        interceptors: [
          (next) => (request) => {
            if (token !== undefined) request.header.set("authorization", `Bearer ${token}`);
            return next(request);
          },
        ],
      }),
    );
  }

  /** corral_rpc_calls_total for one method and code, as Prometheus scrapes it now. */
  async function calls(method: string, code: string): Promise<number> {
    const text = await (await fetch(`${controller.webUrl}/metrics`)).text();
    const line = text
      .split("\n")
      .find((l) => l.startsWith(`corral_rpc_calls_total{method="${method}",code="${code}"}`));
    return line === undefined ? 0 : Number(line.slice(line.lastIndexOf(" ") + 1));
  }

  /** The call-log lines for `method` written since `from`. */
  const callLog = (method: string, from: number) => logged.slice(from).filter((l) => l.method === method);

  it("counts and logs a web call as it does the same call on the bridge", async () => {
    const bridgePort = Number(
      controller.addresses.bridge.slice(controller.addresses.bridge.lastIndexOf(":") + 1),
    );
    const before = await calls(listNodes, "OK");

    let from = logged.length;
    await plaintextClient(NodesService, bridgePort).listNodes({});
    assert.equal(await calls(listNodes, "OK"), before + 1, "the gRPC call is counted");
    const grpcLine = callLog(listNodes, from);
    assert.equal(grpcLine.length, 1, "the gRPC call is in the call log once");

    from = logged.length;
    const answer = await webClient(NodesService, viewer).listNodes({});
    assert.ok(answer.nodes.length >= 1, "the controller's own node is listed");
    assert.equal(await calls(listNodes, "OK"), before + 2, "the web call is counted like the gRPC call");
    const webLine = callLog(listNodes, from);
    assert.equal(webLine.length, 1, "the web call is in the call log once");
    assert.equal(webLine[0]?.msg, grpcLine[0]?.msg);
    assert.deepEqual(Object.keys(webLine[0] ?? {}).sort(), Object.keys(grpcLine[0] ?? {}).sort());
    assert.match(
      String(webLine[0]?.peer),
      /127\.0\.0\.1:\d+$/,
      "the web call's peer is the caller's address",
    );
  });

  it("counts and logs a refused web call with its code", async () => {
    const before = await calls(listNodes, "UNAUTHENTICATED");
    const from = logged.length;
    await assert.rejects(
      webClient(NodesService).listNodes({}),
      (error: unknown) => error instanceof ConnectError && error.code === Code.Unauthenticated,
    );
    assert.equal(await calls(listNodes, "UNAUTHENTICATED"), before + 1);
    const lines = callLog(listNodes, from);
    assert.equal(lines.length, 1);
    assert.equal(lines[0]?.code, "UNAUTHENTICATED");
  });

  it("counts a web stream refused before its first message, and one that ran, when it ends", async () => {
    const refusedBefore = await calls(watchNodes, "UNAUTHENTICATED");
    await assert.rejects(
      (async () => {
        for await (const _ of webClient(NodesService).watchNodes({})) break;
      })(),
      (error: unknown) => error instanceof ConnectError && error.code === Code.Unauthenticated,
    );
    assert.equal(await calls(watchNodes, "UNAUTHENTICATED"), refusedBefore + 1);

    const from = logged.length;
    const abort = new AbortController();
    const stream = webClient(NodesService, viewer).watchNodes({}, { signal: abort.signal });
    const first = await stream[Symbol.asyncIterator]().next();
    assert.equal(first.done, false, "the stream sends the nodes it has");
    abort.abort();
    // The chain ends the call when the handler has stopped: the call log then has it, with a code.
    const line = await eventually(
      async () => callLog(watchNodes, from)[0],
      15_000,
      "the stream's call-log line",
    );
    assert.ok(typeof line.msg === "string");
  });
});
