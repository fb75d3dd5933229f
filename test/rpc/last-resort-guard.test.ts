import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { Code, ConnectError } from "@connectrpc/connect";
import { Client, credentials, Metadata, ServerCredentials, type ServiceError } from "@grpc/grpc-js";
import { pino } from "pino";
import { CorralError } from "../../src/base/errors.ts";
import {
  Health,
  HealthCheckResponse_ServingStatus as Serving,
} from "../../src/gen/grpc/health/v1/health_pb.ts";
import { fromConnectError } from "../../src/rpc/connect-errors.ts";
import type { CallInterceptor } from "../../src/rpc/grpc-adapter.ts";
import { RpcServer } from "../../src/rpc/rpc-server.ts";
import { plaintextClient } from "../helpers/clients.ts";

/**
 * The RPC layer's last resort, in this process: whatever a handler, an interceptor or the status
 * mapping throws, the call ends (INTERNAL for a fault of the server, logged with its stack, nothing of
 * it sent), and the server goes on serving. Before, each of these threw inside a promise handler of
 * the adapter, an unhandled rejection that ends a Node process (this test's, here).
 */

/** A value that cannot even be turned into a string: `String(value)` throws. */
const unprintable = Object.create(null) as object;
/** Every call has a deadline: a call the server never answers fails instead of hanging the test. */
const bounded = { timeoutMs: 10_000 };

describe("the RPC layer's last-resort guard", () => {
  const logged: Record<string, unknown>[] = [];
  const logger = pino(
    { level: "error" },
    {
      write(line: string) {
        logged.push(JSON.parse(line) as Record<string, unknown>);
      },
    },
  );
  // Breaks on request: an interceptor that throws before returning a promise.
  const brittle: CallInterceptor = (ctx, next) => {
    if (ctx.requestHeader.get("x-break") === "interceptor") throw new Error("interceptor broke");
    return next();
  };
  const server = new RpcServer({ logger, interceptors: [brittle] });
  let port = 0;

  before(async () => {
    server.add(Health, {
      check(request, ctx) {
        switch (request.service) {
          case "unprintable":
            throw unprintable;
          case "bad trailer":
            // Headers take Latin-1; grpc-js metadata refuses anything beyond printable ASCII.
            ctx.responseTrailer.set("x-note", "café");
            return { status: Serving.SERVING };
          case "surrogate":
            throw new CorralError("NOT_FOUND", "lost \uD800 half of a pair");
          case "details":
            throw new CorralError("FAILED_PRECONDITION", "see details", {
              details: { node: "Büro-7 ☃ 100%", line: "a\nb" },
            });
          default:
            return { status: Serving.SERVING };
        }
      },
      // biome-ignore lint/correctness/useYield: the stream fails before its first message
      async *watch() {
        throw unprintable;
      },
    });
    port = await server.listen("127.0.0.1:0", ServerCredentials.createInsecure());
  });
  after(() => server.close(1_000));

  const client = () => plaintextClient(Health, port);
  const failure = async (call: Promise<unknown>): Promise<ConnectError> => {
    try {
      await call;
    } catch (error) {
      assert.ok(error instanceof ConnectError, String(error));
      return error;
    }
    assert.fail("the call succeeded");
  };
  const stillServing = async () => assert.equal((await client().check({}, bounded)).status, Serving.SERVING);
  const faultLogged = (method: string) =>
    logged.some(
      (line) =>
        line.method === method && typeof (line.err as { stack?: unknown } | undefined)?.stack === "string",
    );

  it("answers INTERNAL for a thrown value that cannot be described, and serves on", async () => {
    const error = await failure(client().check({ service: "unprintable" }, bounded));
    assert.equal(error.code, Code.Internal);
    await stillServing();
  });

  it("answers INTERNAL when a stream's handler throws such a value", async () => {
    const error = await failure(
      (async () => {
        for await (const _ of client().watch({}, bounded)) assert.fail("no message was expected");
      })(),
    );
    assert.equal(error.code, Code.Internal);
    await stillServing();
  });

  it("answers INTERNAL when a response trailer cannot be sent, logs the fault with its stack, sends none of it", async () => {
    const error = await failure(client().check({ service: "bad trailer" }, bounded));
    assert.equal(error.code, Code.Internal);
    assert.equal(error.rawMessage, "internal error in the server; its log has the details");
    assert.ok(faultLogged("/grpc.health.v1.Health/Check"), JSON.stringify(logged));
    await stillServing();
  });

  it("answers INTERNAL when an interceptor throws synchronously", async () => {
    const error = await failure(client().check({}, { ...bounded, headers: { "x-break": "interceptor" } }));
    assert.equal(error.code, Code.Internal);
    await stillServing();
  });

  it("sends a message with an unpaired surrogate, made well formed", async () => {
    const error = await failure(client().check({ service: "surrogate" }, bounded));
    assert.equal(error.code, Code.NotFound);
    assert.equal(error.rawMessage, "lost \uFFFD half of a pair");
    await stillServing();
  });

  it("percent-encodes details, and our clients read them back", async () => {
    const error = await failure(client().check({ service: "details" }, bounded));
    assert.equal(error.metadata.get("corral-node"), "B%C3%BCro-7 %E2%98%83 100%25");
    assert.deepEqual(fromConnectError(error).details, { node: "Büro-7 ☃ 100%", line: "a\\nb" });
  });

  it("answers a body that is no valid message with INVALID_ARGUMENT", async () => {
    const raw = new Client(`127.0.0.1:${port}`, credentials.createInsecure());
    try {
      const outcome = await new Promise<ServiceError | null>((resolve) =>
        raw.makeUnaryRequest(
          "/grpc.health.v1.Health/Check",
          (bytes: Buffer) => bytes,
          (bytes: Buffer) => bytes,
          Buffer.from([0xff, 0xff, 0xff]),
          new Metadata(),
          { deadline: Date.now() + 10_000 },
          (error) => resolve(error),
        ),
      );
      assert.equal(outcome?.code, 3, outcome?.details);
      assert.match(
        outcome?.details ?? "",
        /^the request is not a valid grpc\.health\.v1\.HealthCheckRequest message/,
      );
    } finally {
      raw.close();
    }
    await stillServing();
  });
});
