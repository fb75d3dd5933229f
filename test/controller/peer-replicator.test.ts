import assert from "node:assert/strict";
import { createServer, type Http2Server } from "node:http2";
import { after, before, describe, it } from "node:test";
import { createClient } from "@connectrpc/connect";
import { connectNodeAdapter, createGrpcTransport } from "@connectrpc/connect-node";
import { PeerReplicator } from "../../src/controller/peer-replicator.ts";
import type { MetricsPoint } from "../../src/core/metrics/metrics-history.ts";
import { ControllerPeerService, type ReplicateRequest } from "../../src/gen/corral/v1/peers_pb.ts";
import { createLogger } from "../../src/observability/logger.ts";
import { eventually } from "../helpers/agent.ts";

/** A peer on a loopback port: records what it is sent; `hold` makes it answer only when released. */
async function startPeer(name: string) {
  const received: ReplicateRequest[] = [];
  let held: Promise<void> | undefined;
  let release: () => void = () => undefined;
  const server: Http2Server = createServer(
    connectNodeAdapter({
      routes: (router) =>
        router.service(ControllerPeerService, {
          async replicate(request) {
            received.push(request);
            await held;
            return { samplesKept: 0 };
          },
        }),
    }),
  );
  // The replicator's clients keep their connections: closing the server ends them too.
  const sessions = new Set<import("node:http2").ServerHttp2Session>();
  server.on("session", (session) => {
    sessions.add(session);
    session.once("close", () => sessions.delete(session));
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const port = (server.address() as { port: number }).port;
  return {
    name,
    clusterAddress: `127.0.0.1:${port}`,
    received,
    hold() {
      held = new Promise<void>((resolve) => {
        release = resolve;
      });
    },
    release: () => release(),
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        for (const session of sessions) session.destroy();
      }),
  };
}

const point = (timeUnixMs: number, gpus = 0): MetricsPoint => ({
  timeUnixMs,
  cpuPercent: 5,
  memoryUsedBytes: 1,
  memoryTotalBytes: 2,
  networkRxBytesPerSecond: 0,
  networkTxBytesPerSecond: 0,
  load1: 0,
  load5: 0,
  load15: 0,
  gpus: Array.from({ length: gpus }, (_, i) => ({
    uuid: `GPU-${i}`,
    name: "test gpu",
    utilizationPercent: 1,
    memoryUsedBytes: 1,
    memoryTotalBytes: 2,
  })),
});

describe("PeerReplicator", () => {
  let slow: Awaited<ReturnType<typeof startPeer>>;
  let fast: Awaited<ReturnType<typeof startPeer>>;
  before(async () => {
    slow = await startPeer("slow");
    fast = await startPeer("fast");
  });
  after(async () => {
    slow.release();
    await Promise.all([slow.close(), fast.close()]);
  });

  const replicator = (maxCallBytes = 1 << 20) =>
    new PeerReplicator({
      name: "me",
      address: "127.0.0.1:1",
      // Its own address among them: never sent to.
      peers: () => ["127.0.0.1:1", slow.clusterAddress, fast.clusterAddress],
      client: async (address) =>
        createClient(ControllerPeerService, createGrpcTransport({ baseUrl: `http://${address}` })),
      everyMs: 20,
      maxSamples: 10_000,
      maxCallBytes,
      callTimeoutMs: 30_000,
      logger: createLogger({ level: "silent" }),
    });

  it("keeps sending to a peer while another one has not answered an earlier batch", async () => {
    slow.received.length = 0;
    fast.received.length = 0;
    slow.hold();
    const peers = replicator();
    peers.start();
    try {
      let t = 1;
      const pushUntil = (done: () => boolean, what: string) =>
        eventually(
          async () => {
            peers.samples("node-1", [point(t++)]);
            return done() ? true : undefined;
          },
          20_000,
          what,
        );
      await pushUntil(() => slow.received.length >= 1, "the slow peer's first batch");
      const base = fast.received.length;
      await pushUntil(() => fast.received.length >= base + 3, "more batches at the fast peer");
      assert.equal(slow.received.length, 1, "the slow peer is still on its first batch");
      slow.release();
      await pushUntil(() => slow.received.length >= 2, "the slow peer again, once it answered");
      // Every call names its sender.
      assert.ok(fast.received.every((r) => r.from === "me"));
    } finally {
      await peers.close();
    }
  });

  it("sends a large batch as several calls, and every sample arrives", async () => {
    fast.received.length = 0;
    slow.received.length = 0;
    const peers = replicator(16 * 1024);
    for (let n = 0; n < 40; n++)
      peers.samples(
        `node-${n}`,
        Array.from({ length: 10 }, (_, i) => point(i + 1, 4)),
      );
    peers.load("node-3", { cpuUsage: 12, memoryUsedMb: 300, at: 42 });
    peers.start();
    try {
      await eventually(
        async () =>
          fast.received.reduce((sum, r) => sum + r.samples.reduce((s, b) => s + b.samples.length, 0), 0) >=
          400
            ? true
            : undefined,
        20_000,
        "all samples",
      );
      assert.ok(fast.received.length > 1, `${fast.received.length} call(s)`);
      const loads = fast.received.flatMap((r) => r.loads);
      assert.deepEqual(
        loads.map((l) => [l.nodeId, l.cpuUsage, l.memoryUsedMb, l.atUnixMs]),
        [["node-3", 12, 300, 42]],
      );
    } finally {
      await peers.close();
    }
  });
});
