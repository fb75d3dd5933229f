import assert from "node:assert/strict";
import { after, afterEach, before, describe, it } from "node:test";
import { setTimeout as sleep } from "node:timers/promises";
import { create } from "@bufbuild/protobuf";
import { Code, ConnectError, createHandlerContext } from "@connectrpc/connect";
import { ServerCredentials } from "@grpc/grpc-js";
import { Health, HealthCheckRequestSchema } from "../../src/gen/grpc/health/v1/health_pb.ts";
import { HealthRegistry, ServingStatus } from "../../src/rpc/health/health-registry.ts";
import { createHealthService, mountHealth } from "../../src/rpc/health/health-service.ts";
import { RpcServer } from "../../src/rpc/rpc-server.ts";
import { plaintextClient } from "../helpers/clients.ts";
import { type AllServicesServer, startAllServicesServer } from "./all-services-server.ts";

const { SERVING, NOT_SERVING, SERVICE_UNKNOWN } = ServingStatus;

/** Waits (bounded) until `condition` holds. */
async function eventually(condition: () => boolean, what: string, timeoutMs = 2_000): Promise<void> {
  for (let waited = 0; !condition(); waited += 10) {
    assert.ok(waited < timeoutMs, `timed out waiting for ${what}`);
    await sleep(10);
  }
}

/** A Watch call read message by message; every read is bounded by the call's deadline. */
class Watcher {
  readonly #abort = new AbortController();
  readonly #stream: AsyncIterator<{ status: ServingStatus }>;

  constructor(port: number, service: string, timeoutMs = 10_000) {
    const client = plaintextClient(Health, port);
    this.#stream = client
      .watch({ service }, { signal: this.#abort.signal, timeoutMs })
      [Symbol.asyncIterator]();
  }

  async next(): Promise<ServingStatus> {
    const step = await this.#stream.next();
    assert.ok(step.done !== true, "the watch ended");
    return step.value.status;
  }

  cancel(): void {
    this.#abort.abort();
    // Read the failure out, so that the client library clears its deadline timer.
    this.#stream.next().catch(() => undefined);
  }
}

describe("health", () => {
  let fixture: AllServicesServer;
  const watchers: Watcher[] = [];
  const watch = (service: string, timeoutMs?: number) => {
    const watcher = new Watcher(fixture.port, service, timeoutMs);
    watchers.push(watcher);
    return watcher;
  };

  before(async () => {
    fixture = await startAllServicesServer();
  });
  afterEach(async () => {
    for (const watcher of watchers.splice(0)) watcher.cancel();
    await eventually(() => fixture.health.listenerCount === 0, "watch listeners to be released");
    fixture.health.resume();
    fixture.health.set("", SERVING);
  });
  after(() => fixture.close());

  it("checks the overall status and registered services; unknown ones are NOT_FOUND", async () => {
    const client = plaintextClient(Health, fixture.port);
    assert.equal((await client.check({ service: "" })).status, SERVING);
    await assert.rejects(client.check({ service: "corral.v1.NodesService" }), (error: unknown) => {
      assert.ok(error instanceof ConnectError);
      assert.equal(error.code, Code.NotFound);
      return true;
    });
    fixture.health.set("corral.v1.NodesService", SERVING);
    assert.equal((await client.check({ service: "corral.v1.NodesService" })).status, SERVING);
    fixture.health.set("corral.v1.NodesService", NOT_SERVING);
    assert.equal((await client.check({ service: "corral.v1.NodesService" })).status, NOT_SERVING);
    fixture.health.remove("corral.v1.NodesService");
    await assert.rejects(
      client.check({ service: "corral.v1.NodesService" }),
      (error: unknown) => error instanceof ConnectError && error.code === Code.NotFound,
    );
  });

  it("lists every registered service with its status", async () => {
    const client = plaintextClient(Health, fixture.port);
    fixture.health.set("distributed_llm.NodeService", SERVING);
    fixture.health.set("picontroller.NodeAgent", NOT_SERVING);
    const { statuses } = await client.list({});
    assert.deepEqual(
      Object.fromEntries(Object.entries(statuses).map(([name, response]) => [name, response.status])),
      { "": SERVING, "distributed_llm.NodeService": SERVING, "picontroller.NodeAgent": NOT_SERVING },
    );
    fixture.health.remove("distributed_llm.NodeService");
    fixture.health.remove("picontroller.NodeAgent");
  });

  it("watch: sends the current status at once, then each change, and nothing for a repeat", async () => {
    const watcher = watch("");
    assert.equal(await watcher.next(), SERVING);
    fixture.health.set("", NOT_SERVING);
    assert.equal(await watcher.next(), NOT_SERVING);
    fixture.health.set("", NOT_SERVING); // no change: nothing is sent
    fixture.health.set("", SERVING);
    assert.equal(await watcher.next(), SERVING);
  });

  it("watch: SERVICE_UNKNOWN for an unregistered service, then its status once it is set", async () => {
    const watcher = watch("nanopinggrpc.hub.HubServerService");
    assert.equal(await watcher.next(), SERVICE_UNKNOWN);
    await eventually(() => fixture.health.listenerCount === 1, "the watch to subscribe");
    fixture.health.set("nanopinggrpc.hub.HubServerService", SERVING);
    assert.equal(await watcher.next(), SERVING);
    fixture.health.remove("nanopinggrpc.hub.HubServerService");
    assert.equal(await watcher.next(), SERVICE_UNKNOWN);
  });

  it("watch: releases its listener when the client cancels or the deadline passes", async () => {
    const cancelled = watch("");
    const timedOut = watch("", 300);
    assert.equal(await cancelled.next(), SERVING);
    assert.equal(await timedOut.next(), SERVING);
    assert.equal(fixture.health.listenerCount, 2);
    cancelled.cancel();
    await eventually(() => fixture.health.listenerCount === 1, "the cancelled watch to unsubscribe");
    await assert.rejects(timedOut.next(), (error: unknown) => {
      assert.ok(error instanceof ConnectError);
      assert.equal(error.code, Code.DeadlineExceeded);
      return true;
    });
    await eventually(() => fixture.health.listenerCount === 0, "the timed-out watch to unsubscribe");
  });

  it("shutdown: every service NOT_SERVING, watchers told, later updates ignored until resume", async () => {
    const client = plaintextClient(Health, fixture.port);
    fixture.health.set("messages.ControlPlane", SERVING);
    const overall = watch("");
    const service = watch("messages.ControlPlane");
    assert.equal(await overall.next(), SERVING);
    assert.equal(await service.next(), SERVING);
    fixture.health.shutdown();
    assert.equal(await overall.next(), NOT_SERVING);
    assert.equal(await service.next(), NOT_SERVING);
    fixture.health.set("messages.ControlPlane", SERVING);
    assert.equal((await client.check({ service: "messages.ControlPlane" })).status, NOT_SERVING);
    fixture.health.resume();
    fixture.health.setAll(SERVING);
    assert.equal(await overall.next(), SERVING);
    assert.equal(await service.next(), SERVING);
    fixture.health.remove("messages.ControlPlane");
  });

  it("refuses to set SERVICE_UNKNOWN or a number that is no status", () => {
    assert.throws(() => fixture.health.set("x", SERVICE_UNKNOWN), /status/);
    assert.throws(() => fixture.health.setAll(42 as ServingStatus), /status/);
    assert.equal(fixture.health.get("x"), undefined);
  });
});

describe("health watch, driven directly", () => {
  it("coalesces changes a slow reader missed into the latest status", async () => {
    const registry = new HealthRegistry();
    const ctx = createHandlerContext({
      service: Health,
      method: Health.method.watch,
      protocolName: "test",
      requestMethod: "POST",
      url: "test://health",
    });
    const stream = createHealthService(registry)
      .watch(create(HealthCheckRequestSchema, { service: "svc" }), ctx)
      [Symbol.asyncIterator]();
    assert.deepEqual(await stream.next(), { done: false, value: { status: SERVICE_UNKNOWN } });
    // The reader does not read while the status changes five times.
    for (const status of [SERVING, NOT_SERVING, SERVING, NOT_SERVING, SERVING]) registry.set("svc", status);
    assert.deepEqual(await stream.next(), { done: false, value: { status: SERVING } });
    // A round trip back to what the reader has is no change at all.
    registry.set("svc", NOT_SERVING);
    registry.set("svc", SERVING);
    const pending = stream.next();
    const first = await Promise.race([pending, sleep(50, "nothing")]);
    assert.equal(first, "nothing");
    registry.set("svc", NOT_SERVING);
    assert.deepEqual(await pending, { done: false, value: { status: NOT_SERVING } });
    assert.equal(registry.listenerCount, 1);
    // Aborting while it waits ends the stream and unsubscribes.
    const last = stream.next();
    ctx.abort();
    assert.deepEqual(await last, { done: true, value: undefined });
    assert.equal(registry.listenerCount, 0);
  });

  it("returning the stream early unsubscribes too", async () => {
    const registry = new HealthRegistry();
    const ctx = createHandlerContext({
      service: Health,
      method: Health.method.watch,
      protocolName: "test",
      requestMethod: "POST",
      url: "test://health",
    });
    const stream = createHealthService(registry)
      .watch(create(HealthCheckRequestSchema, { service: "" }), ctx)
      [Symbol.asyncIterator]();
    assert.deepEqual(await stream.next(), { done: false, value: { status: SERVING } });
    assert.equal(registry.listenerCount, 1);
    await stream.return?.(undefined);
    assert.equal(registry.listenerCount, 0);
  });

  it("ends open watches when the server closes, without leaking listeners", async () => {
    const server = new RpcServer();
    const registry = mountHealth(server);
    const port = await server.listen("127.0.0.1:0", ServerCredentials.createInsecure());
    const watcher = new Watcher(port, "");
    try {
      assert.equal(await watcher.next(), SERVING);
      registry.shutdown();
      assert.equal(await watcher.next(), NOT_SERVING);
      await server.close(100);
      await assert.rejects(watcher.next());
      await eventually(() => registry.listenerCount === 0, "the watch to unsubscribe");
    } finally {
      watcher.cancel();
      server.forceClose();
    }
  });
});
