import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { type Client, Code, ConnectError, createClient, type Transport } from "@connectrpc/connect";
import { createGrpcTransport, createGrpcWebTransport } from "@connectrpc/connect-node";
import { NodeEventType, NodesService } from "../../src/gen/corral/v1/nodes_pb.ts";
import { operatorIdentityUri } from "../../src/security/principal.ts";
import { eventually } from "../helpers/agent.ts";
import { startTestController, type TestController } from "../helpers/controller.ts";

/**
 * Open-stream limits against a real controller: real TLS connections with operator certificates, each
 * transport one HTTP/2 connection. The limits are set low in the controller's YAML so that the test
 * opens a handful of watches, not hundreds.
 */

const perConnection = 3;
const perPrincipal = 5;

interface OpenStream {
  readonly abort: () => void;
  readonly done: Promise<unknown>;
}

const codeOf = (error: unknown) => (error instanceof ConnectError ? error.code : undefined);

/**
 * Opens WatchNodes and resolves once the server's SYNCED arrives (the handler runs, so the stream holds
 * a slot), or rejects with the refusal.
 */
async function openWatch(client: Client<typeof NodesService>): Promise<OpenStream> {
  const controller = new AbortController();
  const iterator = client
    .watchNodes({}, { signal: controller.signal, timeoutMs: 60_000 })
    [Symbol.asyncIterator]();
  for (let i = 0; i < 1_000; i++) {
    const step = await iterator.next();
    if (step.done) throw new Error("the watch ended before SYNCED");
    if (step.value.type === NodeEventType.SYNCED) break;
  }
  // Keeps reading so the stream stays healthy; its end (abort) is expected.
  const done = (async () => {
    for (;;) if ((await iterator.next()).done) return;
  })().catch(() => undefined);
  return { abort: () => controller.abort(), done };
}

describe("open-stream limits (per connection, per principal)", () => {
  let cluster: TestController;
  const opened: OpenStream[] = [];

  const certificateTransport = async (name: string): Promise<Transport> => {
    const issued = await cluster.controller.ca.issue({
      commonName: name,
      dnsNames: [],
      ipAddresses: [],
      uris: [operatorIdentityUri("viewer", name)],
      validityMs: 3_600_000,
      usage: "client",
    });
    return createGrpcTransport({
      baseUrl: `https://localhost:${cluster.clusterPort}`,
      nodeOptions: {
        key: issued.privateKeyPem,
        cert: issued.certificatePem,
        ca: cluster.controller.ca.certificatePem,
      },
    });
  };

  const open = async (client: Client<typeof NodesService>): Promise<OpenStream> => {
    const stream = await openWatch(client);
    opened.push(stream);
    return stream;
  };

  const refused = async (client: Client<typeof NodesService>, limitKey: RegExp) => {
    const error = await openWatch(client).then(
      (stream) => {
        opened.push(stream);
        return undefined;
      },
      (e: unknown) => e,
    );
    assert.ok(error !== undefined, "the stream past the limit was accepted");
    assert.equal(codeOf(error), Code.ResourceExhausted, String(error));
    assert.match((error as Error).message, limitKey);
  };

  before(async () => {
    cluster = await startTestController({
      limits: { streamsPerConnection: perConnection, streamsPerPrincipal: perPrincipal },
    });
  });
  after(async () => {
    for (const stream of opened) stream.abort();
    await Promise.all(opened.map((s) => s.done));
    await cluster?.close();
  });

  it("refuses the stream past each limit with RESOURCE_EXHAUSTED, serves others, and frees slots on cancel", async () => {
    const aliceA = createClient(NodesService, await certificateTransport("alice"));
    const aliceB = createClient(NodesService, await certificateTransport("alice"));
    const bob = createClient(NodesService, await certificateTransport("bob"));

    const first: OpenStream[] = [];
    for (let i = 0; i < perConnection; i++) first.push(await open(aliceA));
    await refused(aliceA, /limits\.streamsPerConnection/);

    // A second connection of the same principal: room up to the principal's limit, not beyond.
    for (let i = perConnection; i < perPrincipal; i++) await open(aliceB);
    await refused(aliceB, /viewer:alice .*limits\.streamsPerPrincipal/);

    // Someone else is served while alice is at her limit.
    await open(bob);

    // A cancelled stream gives its slot back: alice can open one again on the first connection.
    first[0]?.abort();
    await first[0]?.done;
    await eventually(
      async () => {
        try {
          await open(aliceA);
          return true;
        } catch (error) {
          if (codeOf(error) === Code.ResourceExhausted) return undefined;
          throw error;
        }
      },
      10_000,
      "a slot freed by a cancelled stream",
    );
  });

  it("counts streams on the web listener against the same per-principal limit", async () => {
    const { token } = await cluster.controller.context.tokens.create({
      role: "viewer",
      ttlMs: 600_000,
      uses: 0,
      description: "stream-limit test",
      createdBy: "test",
      caFingerprint: cluster.controller.ca.fingerprint,
    });
    const web = createClient(
      NodesService,
      createGrpcWebTransport({
        baseUrl: cluster.controller.webUrl,
        httpVersion: "1.1",
        interceptors: [
          (next) => (request) => {
            request.header.set("authorization", `Bearer ${token}`);
            return next(request);
          },
        ],
      }),
    );
    for (let i = 0; i < perPrincipal; i++) await open(web);
    await refused(web, /limits\.streamsPerPrincipal/);
  });

  it("bounds the loopback bridge too (every local caller is one principal there)", async () => {
    const bridge = createClient(
      NodesService,
      createGrpcTransport({ baseUrl: `http://127.0.0.1:${cluster.bridgePort}` }),
    );
    for (let i = 0; i < perConnection; i++) await open(bridge);
    await refused(bridge, /limits\.streamsPerConnection/);
  });
});
