import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { Code, ConnectError } from "@connectrpc/connect";
import { AgentService } from "../../src/gen/corral/v1/agent_pb.ts";
import { CertificatesService } from "../../src/gen/corral/v1/certificates_pb.ts";
import { NodeStatus, NodesService } from "../../src/gen/corral/v1/nodes_pb.ts";
import { eventually, joinWithToken, startTestAgent, type TestAgent } from "../helpers/agent.ts";
import { plaintextClient } from "../helpers/clients.ts";
import { startTestController, type TestController } from "../helpers/controller.ts";

const codeOf = (error: unknown) => (error instanceof ConnectError ? error.code : undefined);

/** Heartbeat calls and streams the controller handled, from its Prometheus /metrics. */
async function heartbeatCalls(cluster: TestController): Promise<{ calls: number; streams: number }> {
  const text = await (await fetch(`http://127.0.0.1:${cluster.webPort}/metrics`)).text();
  const sum = (method: string) =>
    [...text.matchAll(/^corral_rpc_calls_total\{([^}]*)\} (\S+)$/gm)]
      .filter((m) => (m[1] ?? "").includes(`method="/corral.v1.AgentService/${method}"`))
      .reduce((total, m) => total + Number(m[2]), 0);
  return { calls: sum("Heartbeat"), streams: sum("HeartbeatStream") };
}

/** A heartbeat stream of one's own: push requests, read answers one by one. */
function openStream(node: TestAgent) {
  const pending: { cpuUsage: number }[] = [];
  let wake: (() => void) | undefined;
  let ended = false;
  const requests = {
    async *[Symbol.asyncIterator]() {
      for (;;) {
        const next = pending.shift();
        if (next !== undefined) {
          yield next;
          continue;
        }
        if (ended) return;
        await new Promise<void>((resolve) => {
          wake = resolve;
        });
      }
    },
  };
  const abort = new AbortController();
  const answers = node.agent.link
    .client(AgentService)
    .heartbeatStream(requests, { signal: abort.signal, timeoutMs: 20_000 })
    [Symbol.asyncIterator]();
  return {
    async beat(cpuUsage = 0.5) {
      pending.push({ cpuUsage });
      wake?.();
      return answers.next();
    },
    next: () => answers.next(),
    close() {
      ended = true;
      wake?.();
      abort.abort();
    },
  };
}

describe("heartbeats on a stream", () => {
  let cluster: TestController;
  before(async () => {
    cluster = await startTestController({ liveness: { minInterval: "200ms" } });
  });
  after(() => cluster.close());

  it("sends an agent's heartbeats as messages on one stream once a call went through", async () => {
    const node = await startTestAgent({ name: "streamer" });
    try {
      const before = await heartbeatCalls(cluster);
      await joinWithToken(cluster, node);
      const nodes = plaintextClient(NodesService, cluster.bridgePort);
      const seen = new Set<string>();
      await eventually(
        async () => {
          const { node: record } = await nodes.getNode({ node: "streamer" });
          seen.add(`${record?.lastSeenAt?.seconds}.${record?.lastSeenAt?.nanos}`);
          return seen.size >= 6 ? true : undefined;
        },
        20_000,
        "six heartbeats",
      );
      const during = await heartbeatCalls(cluster);
      // The first heartbeat (and one after reporting itself) may be calls; the rest are messages.
      assert.ok(during.calls - before.calls <= 2, `calls: ${during.calls - before.calls}`);
      assert.equal((await nodes.getNode({ node: "streamer" })).node?.status, NodeStatus.READY);
    } finally {
      await node.close();
    }
  });

  it("answers each heartbeat, and ends the stream with UNAUTHENTICATED once the node is removed", async () => {
    const node = await startTestAgent({ name: "removed-streamer" });
    await joinWithToken(cluster, node);
    const stream = openStream(node);
    try {
      const first = await stream.beat();
      assert.equal(first.done, false);
      assert.ok((first.value?.nextIn?.seconds ?? 0n) > 0n || (first.value?.nextIn?.nanos ?? 0) > 0);
      const second = await stream.beat();
      assert.equal(second.done, false);
      await plaintextClient(NodesService, cluster.bridgePort).removeNode({ node: "removed-streamer" });
      await assert.rejects(
        stream.beat(),
        (e: unknown) => codeOf(e) === Code.Unauthenticated && /no longer a member/.test(String(e)),
      );
    } finally {
      stream.close();
      await node.close();
    }
  });

  it("ends the stream with UNAUTHENTICATED once the node's certificate is revoked", async () => {
    const node = await startTestAgent({ name: "revoked-streamer" });
    await joinWithToken(cluster, node);
    const stream = openStream(node);
    try {
      assert.equal((await stream.beat()).done, false);
      const certs = plaintextClient(CertificatesService, cluster.bridgePort);
      await certs.revokeCertificate({ node: "revoked-streamer", reason: "stolen" });
      await assert.rejects(
        stream.beat(),
        (e: unknown) => codeOf(e) === Code.Unauthenticated && /revoked/.test(String(e)),
      );
    } finally {
      stream.close();
      await node.close();
    }
  });

  it("refuses a stream from a caller that is not a node", async () => {
    const calls = plaintextClient(AgentService, cluster.bridgePort).heartbeatStream(
      (async function* () {
        yield {};
      })(),
      { timeoutMs: 10_000 },
    );
    await assert.rejects(
      (async () => {
        for await (const _ of calls) break;
      })(),
      (e: unknown) => codeOf(e) === Code.PermissionDenied,
    );
  });
});

describe("heartbeat streams and a controller that stops", () => {
  it("ends open streams cleanly when draining starts, so the stop does not wait out its grace", async () => {
    const cluster = await startTestController({ shutdownGrace: "60s" });
    const node = await startTestAgent({ name: "drained" });
    let closing: Promise<void> | undefined;
    try {
      await joinWithToken(cluster, node);
      const stream = openStream(node);
      assert.equal((await stream.beat()).done, false);
      const started = Date.now();
      closing = cluster.close();
      // Ended by the controller with OK (done), not cut off with an error at the end of the grace.
      assert.equal((await stream.next()).done, true);
      stream.close();
      await closing;
      assert.ok(Date.now() - started < 30_000, "the stop did not wait for the 60 s grace");
    } finally {
      await node.close();
      if (closing === undefined) await cluster.close();
    }
  });
});
