import assert from "node:assert/strict";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { create } from "@bufbuild/protobuf";
import type { HandlerContext } from "@connectrpc/connect";
import { localLoggingService } from "../../src/agent/services/logging-service.ts";
import { CorralError } from "../../src/base/errors.ts";
import { Level, type Message, OpenLogStreamRequestSchema } from "../../src/gen/logging_pb.ts";
import { AgentLogRing } from "../../src/host/logs/ring-log-source.ts";
import { PipelineManager } from "../../src/pipelines/manager.ts";

/**
 * LoggingService's stream handler on its own: it lets go of the log when the call is cancelled (no
 * follower left on the ring) and ends a reader that falls behind its bounded queue, instead of
 * buffering without limit. The end-to-end behaviour is in nanoping-logging.test.ts.
 */
describe("LoggingService/openLogStream bounds", () => {
  let dir: string;
  let pipelines: PipelineManager;
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), "corral-logging-bounds-"));
    pipelines = await PipelineManager.open({ dataDir: dir });
  });
  after(async () => {
    await pipelines.close();
    await rm(dir, { recursive: true, force: true });
  });

  const appLog = (lines: bigint) =>
    create(OpenLogStreamRequestSchema, {
      options: { optionalLines: { case: "lines", value: lines } },
      request: { case: "appLogStreamRequest", value: {} },
    });

  it("sends the last N lines with their fields as data, follows, and lets go on cancel", async () => {
    const ring = new AgentLogRing({ capacity: 100 });
    for (let i = 0; i < 5; i++)
      ring.ingest(JSON.stringify({ level: 30, time: 1_000 + i, msg: `line ${i}`, i }));
    const service = localLoggingService({ appLog: ring, pipelines });
    const abort = new AbortController();
    const stream = service.openLogStream?.(appLog(2n), {
      signal: abort.signal,
    } as HandlerContext) as AsyncGenerator<{ messages: Message[] }>;
    const first = await stream.next();
    assert.deepEqual(
      first.value?.messages?.map((m: Message) => [m.message, m.level, m.data]),
      [
        ["line 3", Level.INFO, JSON.stringify({ i: "3" })],
        ["line 4", Level.INFO, JSON.stringify({ i: "4" })],
      ],
    );
    const next = stream.next();
    ring.write("error", "live line");
    const live = await next;
    assert.deepEqual(
      live.value?.messages?.map((m: Message) => [m.message, m.level, m.data]),
      [["live line", Level.ERROR, ""]],
    );
    const pending = stream.next();
    abort.abort();
    assert.equal((await pending).done, true);
    assert.equal(ring.waiting, 0, "no follower left on the ring");
  });

  it("ends a reader that falls behind the bounded queue with RESOURCE_EXHAUSTED", async () => {
    const ring = new AgentLogRing({ capacity: 10_000 });
    const service = localLoggingService({ appLog: ring, pipelines, maxQueued: 5 });
    const abort = new AbortController();
    const stream = service.openLogStream?.(appLog(0n), {
      signal: abort.signal,
    } as HandlerContext) as AsyncGenerator<{ messages: Message[] }>;
    const first = stream.next();
    ring.write("info", "wakes the reader");
    await first;
    // The reader takes nothing while 50 lines arrive: more than 5 waiting ends the stream.
    for (let i = 0; i < 50; i++) ring.write("info", `burst ${i}`);
    await assert.rejects(
      async () => {
        for (let i = 0; i < 100; i++) await stream.next();
      },
      (error: unknown) => error instanceof CorralError && error.code === "RESOURCE_EXHAUSTED",
    );
    abort.abort();
    assert.equal(ring.waiting, 0);
  });
});
