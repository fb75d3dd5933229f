import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { setTimeout as sleep } from "node:timers/promises";
import { Code, ConnectError } from "@connectrpc/connect";
import { ServerCredentials } from "@grpc/grpc-js";
import { CorralError } from "../../src/base/errors.ts";
import {
  Health,
  HealthCheckResponse_ServingStatus as Serving,
} from "../../src/gen/grpc/health/v1/health_pb.ts";
import { ServerReflection } from "../../src/gen/grpc/reflection/v1/reflection_pb.ts";
import { RpcServer } from "../../src/rpc/rpc-server.ts";
import { plaintextClient } from "../helpers/clients.ts";

describe("grpc-js adapter", () => {
  const server = new RpcServer();
  let port = 0;
  let watchClosed = 0;
  let seenDeadline: number | undefined;

  before(async () => {
    server.add(Health, {
      check(request, ctx) {
        seenDeadline = ctx.timeoutMs();
        if (request.service === "missing") throw CorralError.notFound("service", request.service);
        if (request.service === "boom") throw new Error("something broke");
        return { status: Serving.SERVING };
      },
      async *watch(request, ctx) {
        try {
          for (let i = 0; i < Number(request.service || "3"); i++) yield { status: Serving.SERVING };
          if (request.service === "0")
            await new Promise((_, reject) => ctx.signal.addEventListener("abort", reject));
        } finally {
          watchClosed++;
        }
      },
    });
    server.add(ServerReflection, {
      async *serverReflectionInfo(requests) {
        for await (const request of requests) {
          yield {
            validHost: request.host,
            messageResponse: { case: "listServicesResponse", value: { service: [] } },
          };
        }
      },
    });
    port = await server.listen("127.0.0.1:0", ServerCredentials.createInsecure());
  });
  after(() => server.close(1_000));

  it("answers a unary call and passes the deadline to the handler", async () => {
    const client = plaintextClient(Health, port);
    const response = await client.check({ service: "" }, { timeoutMs: 5_000 });
    assert.equal(response.status, Serving.SERVING);
    assert.ok(
      seenDeadline !== undefined && seenDeadline > 0 && seenDeadline <= 5_000,
      `deadline ${seenDeadline}`,
    );
  });

  it("maps CorralError to its gRPC code and keeps the message", async () => {
    const client = plaintextClient(Health, port);
    await assert.rejects(client.check({ service: "missing" }), (error: unknown) => {
      assert.ok(error instanceof ConnectError);
      assert.equal(error.code, Code.NotFound);
      assert.match(error.rawMessage, /service "missing" not found/);
      return true;
    });
  });

  it("turns an unexpected exception into INTERNAL", async () => {
    const client = plaintextClient(Health, port);
    await assert.rejects(client.check({ service: "boom" }), (error: unknown) => {
      assert.ok(error instanceof ConnectError);
      assert.equal(error.code, Code.Internal);
      return true;
    });
  });

  it("answers UNIMPLEMENTED for a method the service does not implement", async () => {
    const client = plaintextClient(Health, port);
    await assert.rejects(
      client.list({}),
      (error: unknown) => error instanceof ConnectError && error.code === Code.Unimplemented,
    );
  });

  it("streams every message of a server stream and ends it", async () => {
    const client = plaintextClient(Health, port);
    const statuses: number[] = [];
    for await (const response of client.watch({ service: "5" })) statuses.push(response.status);
    assert.deepEqual(statuses, [1, 1, 1, 1, 1]);
  });

  it("closes the handler's iterator when the client cancels", async () => {
    const client = plaintextClient(Health, port);
    const before = watchClosed;
    const abort = new AbortController();
    const stream = client.watch({ service: "0" }, { signal: abort.signal });
    const reading = (async () => {
      for await (const _ of stream) {
        /* the stream sends nothing */
      }
    })();
    await sleep(100);
    abort.abort();
    await assert.rejects(reading);
    for (let i = 0; i < 50 && watchClosed === before; i++) await sleep(20);
    assert.equal(watchClosed, before + 1);
  });

  it("runs a bidi stream message by message", async () => {
    const client = plaintextClient(ServerReflection, port);
    async function* requests() {
      yield { host: "a", messageRequest: { case: "listServices" as const, value: "" } };
      yield { host: "b", messageRequest: { case: "listServices" as const, value: "" } };
    }
    const hosts: string[] = [];
    for await (const response of client.serverReflectionInfo(requests())) hosts.push(response.validHost);
    assert.deepEqual(hosts, ["a", "b"]);
  });
});
