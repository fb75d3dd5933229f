import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { Code, ConnectError } from "@connectrpc/connect";
import { defaults } from "../../src/defaults.ts";
import { Health } from "../../src/gen/grpc/health/v1/health_pb.ts";
import { startTestAgent, type TestAgent } from "../helpers/agent.ts";
import { plaintextClient } from "../helpers/clients.ts";

/**
 * The agent's listeners bound open streams as the controller's do: on its local API one connection
 * gets `streams.perConnection` Health/Watch streams (the default), and the next is refused with
 * RESOURCE_EXHAUSTED; the agent keeps answering.
 */
describe("open-stream limits on an agent's local API", () => {
  let node: TestAgent;
  const aborts: AbortController[] = [];
  before(async () => {
    node = await startTestAgent({ name: "stream-limited" });
  });
  after(async () => {
    for (const abort of aborts) abort.abort();
    await node?.close();
  });

  it("refuses the stream past the per-connection limit, and still answers a unary call", async () => {
    const health = plaintextClient(Health, node.localPort);
    const watch = async () => {
      const abort = new AbortController();
      aborts.push(abort);
      const iterator = health
        .watch({ service: "" }, { signal: abort.signal, timeoutMs: 60_000 })
        [Symbol.asyncIterator]();
      await iterator.next();
      void (async () => {
        for (;;) if ((await iterator.next()).done) return;
      })().catch(() => undefined);
    };
    const limit = defaults.streams.perConnection;
    for (let i = 0; i < limit; i++) await watch();
    const refused = await watch().then(
      () => undefined,
      (error: unknown) => error,
    );
    assert.ok(refused instanceof ConnectError, `stream ${limit + 1} was accepted`);
    assert.equal(refused.code, Code.ResourceExhausted, String(refused));
    assert.match(refused.message, /streams\.perConnection/);
    const answer = await health.check({ service: "" }, { timeoutMs: 10_000 });
    assert.ok(answer.status > 0, "the agent still answers");
  });
});
