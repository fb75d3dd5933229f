import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { CorralError } from "../../src/base/errors.ts";
import { drainBounded } from "../../src/faces/corral/bounded-drain.ts";

const overflow = () => new CorralError("RESOURCE_EXHAUSTED", "fell behind");

async function* batches(count: number, size: number, signal?: AbortSignal) {
  for (let i = 0; i < count; i++) {
    if (signal?.aborted) return;
    yield Array.from({ length: size }, (_, j) => i * size + j);
    await new Promise((resolve) => setImmediate(resolve));
  }
}

describe("drainBounded: the devices face's queue between a node's samples and a client", () => {
  it("passes every item on, in order, in batches of at most maxBatch", async () => {
    const got: number[][] = [];
    for await (const batch of drainBounded({
      upstream: batches(10, 3),
      upstreamAbort: new AbortController(),
      signal: new AbortController().signal,
      maxPending: 100,
      maxBatch: 4,
      overflow,
    }))
      got.push(batch);
    assert.deepEqual(
      got.flat(),
      Array.from({ length: 30 }, (_, i) => i),
    );
    assert.ok(got.every((batch) => batch.length >= 1 && batch.length <= 4));
  });

  it("drops a client that falls more than maxPending behind, and stops the upstream", async () => {
    const upstreamAbort = new AbortController();
    const drain = drainBounded({
      upstream: batches(1_000, 10, upstreamAbort.signal),
      upstreamAbort,
      signal: new AbortController().signal,
      maxPending: 25,
      maxBatch: 1,
      overflow,
    });
    // Take one item, then let the upstream run ahead (bounded: it is dropped after a few batches).
    await drain.next();
    for (let i = 0; i < 1_000 && !upstreamAbort.signal.aborted; i++)
      await new Promise((r) => setImmediate(r));
    const error = await (async () => {
      try {
        for await (const _ of drain) {
          // drain what was queued before the overflow
        }
      } catch (caught) {
        return caught;
      }
      return undefined;
    })();
    assert.ok(error instanceof CorralError && error.code === "RESOURCE_EXHAUSTED", String(error));
    assert.ok(upstreamAbort.signal.aborted);
  });

  it("ends when the client's signal aborts", async () => {
    const client = new AbortController();
    const upstreamAbort = new AbortController();
    let taken = 0;
    for await (const _ of drainBounded({
      upstream: batches(1_000_000, 1, upstreamAbort.signal),
      upstreamAbort,
      signal: client.signal,
      maxPending: 1_000,
      maxBatch: 1,
      overflow,
    })) {
      if (++taken === 5) client.abort();
      assert.ok(taken < 1_000, "did not end after the client's signal aborted");
    }
    assert.ok(upstreamAbort.signal.aborted);
  });
});
