import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { CorralError } from "../../src/base/errors.ts";
import type { LogEntry } from "../../src/host/logs/log-source.ts";
import { RingLogSource } from "../../src/host/logs/ring-log-source.ts";

const entry = (i: number): LogEntry => ({
  timestamp: i,
  level: "info",
  message: `line ${i}`,
  source: "test",
  fields: {},
});
const turn = () => new Promise<void>((resolve) => setImmediate(resolve));

describe("RingLogSource batches and room for readers", () => {
  it("hands a follower everything already there in one batch, then what comes, in order", async () => {
    const ring = new RingLogSource(100);
    const abort = new AbortController();
    const batches: number[][] = [];
    const reading = (async () => {
      for await (const batch of ring.followBatches({}, abort.signal, 50))
        batches.push(batch.map((e) => e.timestamp));
    })();
    for (let i = 0; i < 30; i++) ring.append(entry(i));
    await turn();
    for (let i = 30; i < 100; i++) ring.append(entry(i));
    ring.end();
    await reading;
    assert.deepEqual(
      batches.flat(),
      Array.from({ length: 100 }, (_, i) => i),
    );
    assert.ok(batches.length <= 4, `${batches.length} batches for two bursts of 30 and 70 (max 50)`);
    assert.equal(ring.followers, 0);
  });

  it("a writer that waits for room never laps a reader that reads on, however fast it writes", async () => {
    const ring = new RingLogSource(1_000);
    const abort = new AbortController();
    let received = 0;
    let failure: unknown;
    const reading = (async () => {
      try {
        for await (const batch of ring.followBatches({}, abort.signal, 100)) {
          received += batch.length;
          await turn(); // a reader slower than the writer: one turn of the loop per 100 lines
        }
      } catch (error) {
        failure = error;
      }
    })();
    for (let i = 0; i < 50_000; i++) {
      ring.append(entry(i));
      if (i % 250 === 249) await ring.room(500, 60_000);
    }
    ring.end();
    await reading;
    assert.equal(failure, undefined);
    assert.equal(received, 50_000);
  });

  it("waits for a stalled reader at most the time given, then laps it and the reader is told", async () => {
    const ring = new RingLogSource(100);
    const abort = new AbortController();
    const follower = ring.followBatches({}, abort.signal, 10)[Symbol.asyncIterator]();
    ring.append(entry(0));
    const first = await follower.next(); // the reader takes one batch, then stalls
    assert.deepEqual(first.done ? [] : first.value.map((e) => e.timestamp), [0]);
    for (let i = 1; i < 80; i++) ring.append(entry(i));
    const waited = Date.now();
    await ring.room(50, 50); // 79 behind a ring of 100: no room for 50 until the wait runs out
    assert.ok(Date.now() - waited >= 40);
    for (let i = 80; i < 300; i++) ring.append(entry(i));
    // Lapped: the writer no longer waits for it at all.
    const lapped = Date.now();
    await ring.room(50, 10_000);
    assert.ok(Date.now() - lapped < 5_000);
    await assert.rejects(
      (async () => {
        for (let step = await follower.next(); !step.done; step = await follower.next());
      })(),
      (error: unknown) => error instanceof CorralError && error.code === "RESOURCE_EXHAUSTED",
    );
    abort.abort();
  });

  it("room is free with no follower, and a follower that goes away stops holding the writer", async () => {
    const ring = new RingLogSource(10);
    for (let i = 0; i < 100; i++) ring.append(entry(i));
    await ring.room(10, 60_000);
    const abort = new AbortController();
    const follower = ring.followBatches({}, abort.signal, 10)[Symbol.asyncIterator]();
    ring.append(entry(100));
    await follower.next();
    for (let i = 101; i < 109; i++) ring.append(entry(i));
    const waiting = ring.room(5, 60_000);
    await follower.return?.(undefined);
    await waiting;
    assert.equal(ring.followers, 0);
  });
});
