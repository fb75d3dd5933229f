import assert from "node:assert/strict";
import type { SecureClientSessionOptions } from "node:http2";
import { after, before, describe, it } from "node:test";
import { type Client, Code, ConnectError, createClient } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import { JoinService } from "../../src/gen/corral/v1/join_pb.ts";
import { createKeyAndCsr } from "../../src/security/node-key.ts";
import { eventually } from "../helpers/agent.ts";
import { startTestController, type TestController } from "../helpers/controller.ts";

/**
 * A join-request flood from a few networks must not keep a legitimate joiner out. The joins are real
 * anonymous TLS calls to the cluster listener, each from its own loopback source address (all of
 * 127.0.0.0/8 is loopback, so 127.0.1.x and 127.0.2.x are two /24 networks). The limits are set low in
 * the controller's YAML so that a handful of requests fill the list.
 */

const limits = { maxPending: 6, perSource: 2, perNetwork: 3 };
function sourceBound(ca: string, localAddress: string): SecureClientSessionOptions {
  const options: SecureClientSessionOptions & { localAddress: string } = { ca, localAddress };
  return options;
}

const codeOf = (error: unknown) => (error instanceof ConnectError ? error.code : undefined);

describe("join requests under a flood from a few sources", () => {
  let cluster: TestController;
  const waiting = new AbortController();
  const calls: Promise<unknown>[] = [];

  /** A stranger's connection from `localAddress`. */
  const joinFrom = (localAddress: string): Client<typeof JoinService> =>
    createClient(
      JoinService,
      createGrpcTransport({
        baseUrl: `https://localhost:${cluster.clusterPort}`,
        // http2.connect hands its options to tls.connect, which binds the local address (the type
        // does not list it).
        nodeOptions: sourceBound(cluster.controller.ca.certificatePem, localAddress),
      }),
    );

  /** Files a request and leaves it waiting for an operator; resolves to how the call ended. */
  const request = async (localAddress: string, name: string): Promise<{ call: Promise<unknown> }> => {
    const { csrPem } = await createKeyAndCsr(name);
    const call = joinFrom(localAddress)
      .join({ name, csrPem }, { signal: waiting.signal, timeoutMs: 120_000 })
      .catch((error: unknown) => error);
    calls.push(call);
    return { call };
  };

  const pendingNames = async () =>
    (await cluster.controller.context.joinRequests.list({ includeDecided: false })).map((r) => r.name);

  /** Waits until `name` is listed as pending, or its call has ended (then says how). */
  const filed = async (name: string, { call }: { call: Promise<unknown> }): Promise<unknown> => {
    let ended: { ended: unknown } | undefined;
    void call.then((outcome) => {
      ended = { ended: outcome };
    });
    return eventually(
      async () => {
        if ((await pendingNames()).includes(name)) return { filed: true };
        return ended;
      },
      15_000,
      `the join request of ${name}`,
    );
  };

  before(async () => {
    cluster = await startTestController({ limits: { joinRequests: limits } });
  });
  after(async () => {
    waiting.abort();
    await Promise.all(calls);
    await cluster?.close();
  });

  it("caps requests per source and per network, and evicts the biggest network's oldest for a newcomer", async () => {
    // Network 127.0.1.0/24: two from .1, one from .2 — then the network is at its share.
    for (const [address, name] of [
      ["127.0.1.1", "flood-1a"],
      ["127.0.1.1", "flood-1b"],
      ["127.0.1.2", "flood-1c"],
    ] as const) {
      assert.deepEqual(await filed(name, await request(address, name)), { filed: true });
    }
    const refusal = async (address: string, name: string) =>
      ((await filed(name, await request(address, name))) as { ended?: unknown }).ended;
    const thirdFromSource = await refusal("127.0.1.1", "flood-1d");
    assert.equal(codeOf(thirdFromSource), Code.ResourceExhausted, String(thirdFromSource));
    assert.match((thirdFromSource as Error).message, /limits\.joinRequests\.perSource/);
    const fourthFromNetwork = await refusal("127.0.1.3", "flood-1e");
    assert.equal(codeOf(fourthFromNetwork), Code.ResourceExhausted, String(fourthFromNetwork));
    assert.match((fourthFromNetwork as Error).message, /limits\.joinRequests\.perNetwork/);

    // Network 127.0.2.0/24 fills the list.
    for (const [address, name] of [
      ["127.0.2.1", "flood-2a"],
      ["127.0.2.1", "flood-2b"],
      ["127.0.2.2", "flood-2c"],
    ] as const) {
      assert.deepEqual(await filed(name, await request(address, name)), { filed: true });
    }
    assert.equal((await pendingNames()).length, limits.maxPending);

    // A legitimate joiner from elsewhere gets a place; the flood's oldest request makes room.
    const evicted = calls[0] as Promise<unknown>;
    assert.deepEqual(await filed("legit", await request("127.0.3.1", "legit")), { filed: true });
    const names = await pendingNames();
    assert.equal(names.length, limits.maxPending);
    assert.ok(!names.includes("flood-1a"), `the oldest flood request was evicted: ${names.join(", ")}`);
    const outcome = await evicted;
    assert.equal(codeOf(outcome), Code.ResourceExhausted, String(outcome));
    assert.match((outcome as Error).message, /evicted/);
    const decided = await cluster.controller.context.joinRequests.list({ includeDecided: true });
    const record = decided.find((r) => r.name === "flood-1a");
    assert.equal(record?.state, "expired");
    assert.equal(record?.decidedBy, "controller");
    assert.match(record?.reason ?? "", /evicted to make room.*127\.0\.1\.0\/24/);
  });
});
