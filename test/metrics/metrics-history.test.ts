import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { Code, ConnectError } from "@connectrpc/connect";
import { MetricsHistory, type MetricsPoint, rawSampleBytes } from "../../src/core/metrics/metrics-history.ts";
import { MetricsService } from "../../src/gen/corral/v1/metrics_pb.ts";
import { eventually, joinWithToken, startTestAgent, type TestAgent } from "../helpers/agent.ts";
import { plaintextClient } from "../helpers/clients.ts";
import { startTestController, type TestController } from "../helpers/controller.ts";

function point(time: number, extra: Partial<MetricsPoint> = {}): MetricsPoint {
  return {
    timeUnixMs: time,
    cpuPercent: 10,
    memoryUsedBytes: 1_000,
    memoryTotalBytes: 4_000,
    networkRxBytesPerSecond: 5,
    networkTxBytesPerSecond: 6,
    load1: 0.5,
    load5: 0.4,
    load15: 0.3,
    gpus: [],
    ...extra,
  };
}

describe("metrics history (core)", () => {
  it("keeps at most `capacity` samples per node, oldest dropped, in order", () => {
    const history = new MetricsHistory({ capacity: 4, maxQueued: 10 });
    for (let t = 1; t <= 10; t += 1) history.record("n1", [point(t, { cpuPercent: t })]);
    assert.deepEqual(
      history.history("n1").map((p) => p.timeUnixMs),
      [7, 8, 9, 10],
    );
    assert.equal(history.latest("n1")?.cpuPercent, 10);
    assert.deepEqual(
      history.history("n1", 8).map((p) => p.timeUnixMs),
      [9, 10],
    );
    assert.equal(history.bytes, 4 * rawSampleBytes);
  });

  it("keeps optional temperature and GPUs, skips re-sent samples, clamps percentages", () => {
    const history = new MetricsHistory({ capacity: 3, maxQueued: 10 });
    const gpu = {
      uuid: "GPU-1",
      name: "A",
      utilizationPercent: 250,
      memoryUsedBytes: 1,
      memoryTotalBytes: 2,
    };
    assert.equal(history.record("n1", [point(1, { temperatureCelsius: 51.5, gpus: [gpu] }), point(2)]), 2);
    assert.equal(history.record("n1", [point(2), point(3)]), 1, "the re-sent sample 2 is skipped");
    const [first, second] = history.history("n1");
    assert.equal(first?.temperatureCelsius, 51.5);
    assert.equal(first?.gpus[0]?.utilizationPercent, 100);
    assert.equal(second?.temperatureCelsius, undefined);
    assert.deepEqual(second?.gpus, []);
  });

  it("refuses a batch with a non-finite number and keeps none of it", () => {
    const history = new MetricsHistory({ capacity: 3, maxQueued: 10 });
    assert.throws(
      () => history.record("n1", [point(1), point(2, { cpuPercent: Number.NaN })]),
      /cpu_percent: must be a finite number/,
    );
    assert.deepEqual(history.history("n1"), []);
  });

  it("a watcher gets the history, then live samples; a slow one is cut off", async () => {
    const history = new MetricsHistory({ capacity: 10, maxQueued: 3 });
    history.record("n1", [point(1), point(2)]);
    const stop = new AbortController();
    const watch = history.watch("n1", 0, stop.signal);
    const first = await watch.next();
    assert.deepEqual(
      first.value?.samples.map((p: MetricsPoint) => p.timeUnixMs),
      [1, 2],
    );
    assert.equal(first.value?.history, true);
    history.record("n1", [point(3)]);
    history.record("n2", [point(3)]);
    const live = await watch.next();
    assert.equal(live.value?.history, false);
    assert.equal(live.value?.nodeId, "n1");
    assert.deepEqual(
      live.value?.samples.map((p: MetricsPoint) => p.timeUnixMs),
      [3],
    );
    // Four samples while the reader reads none: more than maxQueued (3).
    for (let t = 4; t <= 7; t += 1) history.record("n1", [point(t)]);
    await assert.rejects(watch.next(), /RESOURCE_EXHAUSTED|fell more than 3 samples behind/);
    assert.equal(history.watchers, 0);
    stop.abort();
  });

  it("forgets removed nodes", () => {
    const history = new MetricsHistory({ capacity: 3, maxQueued: 10 });
    history.record("n1", [point(1)]);
    history.record("n2", [point(1)]);
    history.retain(new Set(["n2"]));
    assert.deepEqual(history.nodeIds(), ["n2"]);
  });
});

describe("metrics history (controller and agents)", () => {
  const capacity = 4;
  let cluster: TestController;
  const agents: TestAgent[] = [];

  before(async () => {
    cluster = await startTestController({ metrics: { interval: "150ms", historySamples: capacity } });
    for (const name of ["metrics-a", "metrics-b"]) {
      const agent = await startTestAgent({ name });
      agents.push(agent);
      await joinWithToken(cluster, agent);
    }
  });

  after(async () => {
    for (const agent of agents) await agent.close();
    await cluster?.close();
  });

  it("agents push on the controller's interval; the history is bounded", async () => {
    const client = plaintextClient(MetricsService, cluster.bridgePort);
    const full = await eventually(
      async () => {
        const answer = await client.getNodeMetricsHistory({ nodeId: "metrics-a" });
        return answer.samples.length === capacity ? answer : undefined;
      },
      20_000,
      "a full ring of samples from metrics-a",
    );
    assert.equal(full.capacity, capacity);
    assert.equal(full.interval?.nanos, 150_000_000);
    const times = full.samples.map((s) => s.timeUnixMs);
    assert.deepEqual(
      times,
      [...times].sort((a, b) => a - b),
    );
    for (const sample of full.samples) {
      assert.ok(sample.memoryTotalBytes > 0, "memory total is reported");
      assert.ok(sample.memoryUsedBytes > 0 && sample.memoryUsedBytes <= sample.memoryTotalBytes);
      assert.ok(sample.cpuPercent >= 0 && sample.cpuPercent <= 100);
    }
    // More pushes arrive; the ring stays at its capacity and moves on.
    const later = await eventually(
      async () => {
        const answer = await client.getNodeMetricsHistory({ nodeId: "metrics-a" });
        return (answer.samples[0]?.timeUnixMs ?? 0) > (times.at(-1) ?? 0) ? answer : undefined;
      },
      20_000,
      "the ring to move on",
    );
    assert.equal(later.samples.length, capacity);
  });

  it("WatchNodeMetrics sends the history, then live samples", async () => {
    const client = plaintextClient(MetricsService, cluster.bridgePort);
    // The watch opens once metrics-b has pushed: then its history cannot be empty.
    await eventually(
      async () =>
        (await client.getNodeMetricsHistory({ nodeId: "metrics-b" })).samples.length > 0 ? true : undefined,
      20_000,
      "a sample from metrics-b",
    );
    const stop = new AbortController();
    const stream = client.watchNodeMetrics(
      { nodeId: "metrics-b" },
      { signal: AbortSignal.any([stop.signal, AbortSignal.timeout(15_000)]) },
    );
    const seen: { history: boolean; times: number[] }[] = [];
    try {
      for await (const message of stream) {
        assert.ok(message.nodeId.length > 0);
        seen.push({ history: message.history, times: message.samples.map((s) => s.timeUnixMs) });
        if (seen.filter((m) => !m.history).length >= 2) break;
      }
    } finally {
      stop.abort();
    }
    assert.equal(seen[0]?.history, true, "history comes first");
    assert.ok((seen[0]?.times.length ?? 0) >= 1, "with the samples kept so far");
    assert.ok(seen.slice(1).every((m) => !m.history && m.times.length === 1));
    const all = seen.flatMap((m) => m.times);
    for (let i = 1; i < all.length; i += 1) assert.ok((all[i] ?? 0) > (all[i - 1] ?? 0), "no sample twice");
  });

  it("the whole-fleet watch covers every node, the controller's own included", async () => {
    const client = plaintextClient(MetricsService, cluster.bridgePort);
    const { nodes: latest } = await client.listLatestMetrics({});
    const expected = new Set([
      cluster.controller.context.facts.controllerNodeId,
      ...["metrics-a", "metrics-b"].map((name) => latest.find((n) => n.nodeName === name)?.nodeId ?? name),
    ]);
    const stop = new AbortController();
    const nodes = new Set<string>();
    try {
      for await (const message of client.watchNodeMetrics(
        {},
        { signal: AbortSignal.any([stop.signal, AbortSignal.timeout(15_000)]) },
      )) {
        nodes.add(message.nodeId);
        if ([...expected].every((id) => nodes.has(id))) break;
      }
    } finally {
      stop.abort();
    }
    assert.deepEqual([...nodes].sort(), [...expected].sort());
  });

  it("/metrics has per-node gauges", async () => {
    const text = await eventually(async () => {
      const body = await (await fetch(`${cluster.controller.webUrl}/metrics`)).text();
      return body.includes('node="metrics-b"') ? body : undefined;
    });
    for (const name of ["metrics-a", "metrics-b"]) {
      for (const gauge of ["corral_node_cpu_percent", "corral_node_memory_used_bytes", "corral_node_load1"]) {
        assert.match(text, new RegExp(`^${gauge}\\{node_id="[^"]+",node="${name}"\\} [0-9.e+-]+$`, "m"));
      }
    }
    const bytes = /^corral_metrics_history_bytes (\d+)$/m.exec(text);
    assert.ok(bytes !== null);
    assert.ok(Number(bytes[1]) <= 3 * capacity * rawSampleBytes, "at most three full rings");
  });

  it("only a node pushes metrics, about itself", async () => {
    const client = plaintextClient(MetricsService, cluster.bridgePort);
    await assert.rejects(
      client.pushMetrics({ samples: [{ timeUnixMs: Date.now() }] }),
      (error: unknown) => ConnectError.from(error).code === Code.PermissionDenied,
    );
    await assert.rejects(
      client.getNodeMetricsHistory({ nodeId: "no-such-node" }),
      (error: unknown) => ConnectError.from(error).code === Code.NotFound,
    );
  });
});
