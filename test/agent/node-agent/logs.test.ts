import assert from "node:assert/strict";
import {
  appendFileSync,
  mkdtempSync,
  realpathSync,
  renameSync,
  rmSync,
  symlinkSync,
  truncateSync,
  writeFileSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { setTimeout as sleep } from "node:timers/promises";
import { Code, ConnectError } from "@connectrpc/connect";
import { ServerCredentials } from "@grpc/grpc-js";
import { CommandExecutor } from "../../../src/agent/services/node-agent/exec/command-executor.ts";
import { execAndLogsService } from "../../../src/agent/services/node-agent/exec-and-logs-service.ts";
import { type LogEntry, NodeAgent } from "../../../src/gen/picontroller_pb.ts";
import { FileLogSources } from "../../../src/host/logs/file-log-source.ts";
import { LogSourceRegistry } from "../../../src/host/logs/log-source-registry.ts";
import { LogStreamState, streamLogEntries } from "../../../src/host/logs/log-stream.ts";
import { AgentLogRing, RingLogSource } from "../../../src/host/logs/ring-log-source.ts";
import { createLogger } from "../../../src/observability/logger.ts";
import { RpcServer } from "../../../src/rpc/rpc-server.ts";
import { plaintextClient } from "../../helpers/clients.ts";

async function until(condition: () => boolean, withinMs = 5_000, what = "condition"): Promise<void> {
  const deadline = Date.now() + withinMs;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(10);
  }
}

async function errorOf(promise: Promise<unknown>): Promise<ConnectError> {
  const error = await promise.then(
    () => undefined,
    (e: unknown) => e,
  );
  assert.ok(error instanceof ConnectError, `expected a ConnectError, got ${String(error)}`);
  return error;
}

async function collect(stream: AsyncIterable<LogEntry>): Promise<LogEntry[]> {
  const out: LogEntry[] = [];
  for await (const entry of stream) out.push(entry);
  return out;
}

describe("StreamLogs", () => {
  const dir = realpathSync(mkdtempSync(join(tmpdir(), "corral-logs-")));
  const outside = realpathSync(mkdtempSync(join(tmpdir(), "corral-outside-")));
  const server = new RpcServer();
  const ring = new AgentLogRing({ capacity: 10_000 });
  const states: LogStreamState[] = [];
  const maxQueued = 50;
  const files = new FileLogSources({ allowed: [`${dir}/*`, `${outside}/exact.log`], pollIntervalMs: 100 });
  const logs = new LogSourceRegistry({ agent: ring, files, journal: null });
  let client: ReturnType<typeof plaintextClient<typeof NodeAgent>>;

  before(async () => {
    server.add(
      NodeAgent,
      execAndLogsService({
        executor: new CommandExecutor({ audit: () => {} }),
        logs,
        maxQueued,
        onLogStream: (state) => states.push(state),
      }),
    );
    const port = await server.listen("127.0.0.1:0", ServerCredentials.createInsecure());
    client = plaintextClient(NodeAgent, port);
  });

  after(async () => {
    await server.close(1_000);
    rmSync(dir, { recursive: true, force: true });
    rmSync(outside, { recursive: true, force: true });
    // Every stream let its source go.
    assert.ok(
      states.every((s) => s.finished),
      "every stream finished",
    );
    assert.equal(ring.waiting, 0, "no follower left on the agent ring");
  });

  it("follows an allowed file: tail first, then lines appended after the call started; cancel ends it", {
    timeout: 15_000,
  }, async () => {
    const file = join(dir, "app.log");
    writeFileSync(file, "old-1\nold-2\nold-3\n");
    const controller = new AbortController();
    const stream = client.streamLogs(
      { source: `file:${file}`, tail: 2, follow: true },
      { signal: controller.signal, timeoutMs: 10_000 },
    );
    const seen: string[] = [];
    const reading = (async () => {
      try {
        for await (const entry of stream) {
          assert.equal(entry.source, `file:${file}`);
          seen.push(entry.message);
        }
        return "ended";
      } catch (error) {
        return error;
      }
    })();
    await until(() => seen.length === 2, 5_000, "the tail");
    assert.deepEqual(seen, ["old-2", "old-3"]);
    appendFileSync(file, "new-1\nnew-");
    appendFileSync(file, "2\n");
    await until(() => seen.length === 4, 5_000, "appended lines");
    assert.deepEqual(seen.slice(2), ["new-1", "new-2"]);
    const streamsBefore = states.length;
    controller.abort();
    const outcome = await reading;
    assert.ok(outcome instanceof ConnectError && outcome.code === Code.Canceled, String(outcome));
    const state = states[streamsBefore - 1];
    await until(() => state?.finished === true, 5_000, "the server side to end");
  });

  it("follows a file through truncation and rotation", { timeout: 15_000 }, async () => {
    const file = join(dir, "rotating.log");
    writeFileSync(file, "a\n");
    const controller = new AbortController();
    const seen: string[] = [];
    const reading = (async () => {
      try {
        for await (const entry of client.streamLogs(
          { source: `file:${file}`, follow: true },
          { signal: controller.signal, timeoutMs: 10_000 },
        ))
          seen.push(entry.message);
      } catch {
        // cancelled
      }
    })();
    await until(() => states.at(-1)?.finished === false, 5_000, "the stream to start");
    await sleep(100);
    appendFileSync(file, "b\n");
    await until(() => seen.includes("b"), 5_000, "b");
    truncateSync(file, 0);
    await sleep(250);
    appendFileSync(file, "after-truncate\n");
    await until(() => seen.includes("after-truncate"), 5_000, "a line after truncation");
    renameSync(file, `${file}.1`);
    appendFileSync(`${file}.1`, "late-in-old\n");
    writeFileSync(file, "in-new-file\n");
    await until(() => seen.includes("in-new-file"), 5_000, "a line of the new file");
    assert.deepEqual(seen, ["b", "after-truncate", "late-in-old", "in-new-file"]);
    controller.abort();
    await reading;
  });

  it("without follow, sends the tail and ends; filters by level, text and time", {
    timeout: 10_000,
  }, async () => {
    const file = join(dir, "mixed.log");
    const lines = [
      JSON.stringify({ level: 20, time: 1_000, msg: "debug thing" }),
      JSON.stringify({ level: 30, time: 2_000, msg: "Started Service", unit: "corral" }),
      JSON.stringify({ level: 40, time: 3_000, msg: "disk nearly full" }),
      JSON.stringify({ level: 50, time: 4_000, msg: "SERVICE failed", code: 7 }),
      "2024-05-01T10:00:00Z host app[1]: ERROR plain syslog line about service",
    ];
    writeFileSync(file, `${lines.join("\n")}\n`);
    const all = await collect(client.streamLogs({ source: `file:${file}`, tail: 100 }, { timeoutMs: 5_000 }));
    assert.deepEqual(
      all.map((e) => [e.level, e.message]),
      [
        ["debug", "debug thing"],
        ["info", "Started Service"],
        ["warn", "disk nearly full"],
        ["error", "SERVICE failed"],
        ["error", lines[4]],
      ],
    );
    assert.equal(all[3]?.fields.code, "7");
    assert.equal(all[4]?.timestamp, BigInt(Date.parse("2024-05-01T10:00:00Z")));
    const warnUp = await collect(
      client.streamLogs({ source: `file:${file}`, tail: 100, level: "warn" }, { timeoutMs: 5_000 }),
    );
    assert.deepEqual(
      warnUp.map((e) => e.level),
      ["warn", "error", "error"],
    );
    const service = await collect(
      client.streamLogs({ source: `file:${file}`, tail: 2, contains: "service" }, { timeoutMs: 5_000 }),
    );
    assert.deepEqual(
      service.map((e) => e.message),
      ["SERVICE failed", lines[4]],
    );
    const since = await collect(
      client.streamLogs(
        { source: `file:${file}`, tail: 100, since: 3_000n, level: "info" },
        { timeoutMs: 5_000 },
      ),
    );
    assert.deepEqual(
      since.map((e) => e.message),
      ["disk nearly full", "SERVICE failed", lines[4]],
    );
  });

  it("tails a large file from the end", { timeout: 10_000 }, async () => {
    const file = join(dir, "big.log");
    const body = Array.from({ length: 200_000 }, (_, i) => `line ${i}`).join("\n");
    writeFileSync(file, `${body}\n`);
    const started = Date.now();
    const last = await collect(client.streamLogs({ source: `file:${file}`, tail: 3 }, { timeoutMs: 5_000 }));
    assert.deepEqual(
      last.map((e) => e.message),
      ["line 199997", "line 199998", "line 199999"],
    );
    assert.ok(Date.now() - started < 2_000);
    // The bound on how far back a tail reads.
    const bounded = new FileLogSources({ allowed: [`${dir}/*`], tailMaxBytes: 1_000 });
    const source = await bounded.open(file);
    const entries = await source.tail(10_000, {});
    assert.ok(entries.length > 50 && entries.length < 120, `${entries.length} lines from 1000 bytes`);
  });

  it("refuses files outside the allow-list, and escapes by .. or symlink", { timeout: 10_000 }, async () => {
    writeFileSync(join(outside, "secret.log"), "secret\n");
    writeFileSync(join(outside, "exact.log"), "exact\n");
    symlinkSync(join(outside, "secret.log"), join(dir, "link-out.log"));
    symlinkSync(join(outside, "exact.log"), join(dir, "link-to-allowed.log"));
    for (const path of [
      "/etc/passwd",
      join(outside, "secret.log"),
      `${dir}/../${outside.split("/").at(-1)}/secret.log`,
      `${dir}/./app.log`,
      join(dir, "link-out.log"),
      "relative.log",
      `${dir}/sub/deeper.log`,
      dir,
    ]) {
      const error = await errorOf(
        collect(client.streamLogs({ source: `file:${path}`, tail: 1 }, { timeoutMs: 5_000 })),
      );
      assert.equal(error.code, Code.PermissionDenied, `${path}: ${error.message}`);
      assert.doesNotMatch(error.message, /secret\n/);
    }
    // A link inside the allowed place to another allowed file is fine.
    const ok = await collect(
      client.streamLogs(
        { source: `file:${join(dir, "link-to-allowed.log")}`, tail: 1 },
        { timeoutMs: 5_000 },
      ),
    );
    assert.deepEqual(
      ok.map((e) => e.message),
      ["exact"],
    );
    const missing = await errorOf(
      collect(client.streamLogs({ source: `file:${join(dir, "nope.log")}`, tail: 1 }, { timeoutMs: 5_000 })),
    );
    assert.equal(missing.code, Code.NotFound);
  });

  it("reads the agent's own log through the logger's tee", { timeout: 10_000 }, async () => {
    const logger = createLogger({ level: "debug", name: "test-agent", tee: ring.ingest });
    logger.info({ node: "n-17", attempt: 2 }, "joined the cluster");
    logger.debug("a debug detail");
    const tail = await collect(client.streamLogs({ source: "agent", tail: 2 }, { timeoutMs: 5_000 }));
    assert.equal(tail.length, 2);
    const [joined, detail] = tail;
    assert.equal(joined?.message, "joined the cluster");
    assert.equal(joined?.level, "info");
    assert.equal(joined?.source, "agent");
    assert.equal(joined?.fields.node, "n-17");
    assert.equal(joined?.fields.attempt, "2");
    assert.equal(joined?.fields.name, "test-agent");
    assert.ok(joined !== undefined && Math.abs(Number(joined.timestamp) - Date.now()) < 5_000);
    assert.equal(detail?.level, "debug");

    const controller = new AbortController();
    const seen: LogEntry[] = [];
    const reading = (async () => {
      try {
        for await (const entry of client.streamLogs(
          { source: "", follow: true, level: "warn" },
          { signal: controller.signal, timeoutMs: 10_000 },
        ))
          seen.push(entry);
      } catch {
        // cancelled
      }
    })();
    await until(() => ring.waiting === 1, 5_000, "the follower");
    logger.info("not shown: below warn");
    logger.warn({ disk: "/" }, "disk filling up");
    await until(() => seen.length === 1, 5_000, "the followed entry");
    assert.equal(seen[0]?.message, "disk filling up");
    assert.equal(seen[0]?.level, "warn");
    controller.abort();
    await reading;
    await until(() => ring.waiting === 0, 5_000, "the follower to leave");
  });

  it("ends a stream whose reader is too slow with RESOURCE_EXHAUSTED; the queue stays bounded", {
    timeout: 20_000,
  }, async () => {
    const big = "x".repeat(2_000);
    const iterator = client
      .streamLogs({ source: "agent", follow: true, contains: "flood" }, { timeoutMs: 15_000 })
      [Symbol.asyncIterator]();
    const pending = iterator.next();
    await until(() => ring.waiting === 1, 5_000, "the follower");
    ring.write("info", "flood first");
    const first = await pending;
    assert.equal(first.value?.message, "flood first");
    const state = states.at(-1);
    assert.ok(state !== undefined);
    // The client reads nothing more while the agent logs far more than the queue may hold.
    for (let batch = 0; batch < 40 && !state.overflowed; batch++) {
      for (let i = 0; i < 100; i++) ring.write("info", `flood ${batch}-${i} ${big}`);
      await sleep(5);
    }
    await until(() => state.overflowed, 5_000, "the queue to overflow");
    assert.ok(state.peakQueued <= maxQueued, `peak ${state.peakQueued} > ${maxQueued}`);
    assert.equal(state.peakQueued, maxQueued);
    assert.equal(state.queued, 0, "the queue is dropped");
    await until(() => ring.waiting === 0, 5_000, "the source to be let go");
    // What was already on its way is delivered, then the error.
    let received = 1;
    const error = await (async () => {
      try {
        for (let step = await iterator.next(); !step.done; step = await iterator.next()) received++;
      } catch (e) {
        return e;
      }
      return undefined;
    })();
    assert.ok(error instanceof ConnectError, String(error));
    assert.equal(error.code, Code.ResourceExhausted);
    assert.match(error.rawMessage, /reader too slow/);
    assert.match(error.rawMessage, /reconnect with since=\d+/);
    assert.equal(received, state.delivered + 0, "everything delivered before the error was received");
  });

  it("streams a pipeline run's output until the run ends; unknown runs are NOT_FOUND", {
    timeout: 10_000,
  }, async () => {
    const run = new RingLogSource(100);
    const unregister = logs.registerPipeline("run-42", run);
    try {
      run.append({ timestamp: 1, level: "info", message: "step 1", source: "pipeline:run-42", fields: {} });
      const seen: string[] = [];
      const reading = (async () => {
        for await (const entry of client.streamLogs(
          { source: "pipeline:run-42", tail: 10, follow: true },
          { timeoutMs: 5_000 },
        ))
          seen.push(entry.message);
      })();
      await until(() => seen.length === 1, 5_000, "the tail");
      run.append({ timestamp: 2, level: "info", message: "step 2", source: "pipeline:run-42", fields: {} });
      run.end();
      await reading;
      assert.deepEqual(seen, ["step 1", "step 2"]);
    } finally {
      unregister();
    }
    const error = await errorOf(
      collect(client.streamLogs({ source: "pipeline:run-42", tail: 1 }, { timeoutMs: 5_000 })),
    );
    assert.equal(error.code, Code.NotFound);
  });

  it("answers FAILED_PRECONDITION for the journal on a node without one", { timeout: 10_000 }, async () => {
    const error = await errorOf(
      collect(client.streamLogs({ source: "journal", tail: 1 }, { timeoutMs: 5_000 })),
    );
    assert.equal(error.code, Code.FailedPrecondition);
    assert.match(error.rawMessage, /no systemd journal on this node/);
  });

  it("answers INVALID_ARGUMENT naming the field", { timeout: 10_000 }, async () => {
    for (const [filter, field] of [
      [{ source: "bogus" }, "source"],
      [{ source: "file:" }, "source"],
      [{ source: "pipeline:../x" }, "source"],
      [{ level: "verbose" }, "level"],
      [{ tail: 10_001 }, "tail"],
      [{ tail: -1 }, "tail"],
      [{ since: -5n }, "since"],
      [{ contains: "x".repeat(2_000) }, "contains"],
    ] as const) {
      const error = await errorOf(collect(client.streamLogs(filter, { timeoutMs: 5_000 })));
      assert.equal(error.code, Code.InvalidArgument, `${field}: ${error.message}`);
      assert.ok(error.rawMessage.startsWith(`${field}:`), error.rawMessage);
    }
  });
});

describe("log stream backpressure (no transport)", () => {
  it("holds at most maxQueued entries for a reader that stops reading", { timeout: 10_000 }, async () => {
    const ring = new RingLogSource(100_000);
    const controller = new AbortController();
    const state = new LogStreamState(10);
    const stream = streamLogEntries(
      ring,
      {},
      { tail: 0, follow: true, maxQueued: 10, signal: controller.signal, state },
    );
    const pending = stream.next();
    await until(() => ring.waiting === 1, 2_000, "the follower");
    ring.append({ timestamp: 5, level: "info", message: "first", source: "agent", fields: {} });
    assert.equal((await pending).value?.message, "first");
    for (let i = 0; i < 10_000; i++) {
      ring.append({ timestamp: 6 + i, level: "info", message: `m${i}`, source: "agent", fields: {} });
      if (i % 100 === 0) await sleep(0);
    }
    await until(() => state.overflowed, 2_000, "overflow");
    assert.equal(state.peakQueued, 10);
    assert.equal(state.queued, 0);
    await assert.rejects(stream.next(), { code: "RESOURCE_EXHAUSTED", message: /since=5\b/ });
    assert.equal(state.finished, true);
    assert.equal(ring.waiting, 0);
  });

  it("ends when the signal aborts while waiting", { timeout: 5_000 }, async () => {
    const ring = new RingLogSource(10);
    const controller = new AbortController();
    const stream = streamLogEntries(
      ring,
      {},
      { tail: 0, follow: true, maxQueued: 10, signal: controller.signal },
    );
    const next = stream.next();
    await sleep(20);
    controller.abort();
    assert.equal((await next).done, true);
    assert.equal(ring.waiting, 0);
  });
});
