import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { CorralError, ErrorCode } from "../../src/base/errors.ts";
import type { StoreEvent } from "../../src/store/types.ts";
import { WatchBuffer } from "../../src/store/watch-buffer.ts";

function batch(revision: number, size: number): StoreEvent[] {
  return Array.from({ length: size }, (_, i) => ({
    revision,
    type: "put" as const,
    key: `/k${i}`,
    value: "v",
  }));
}

describe("WatchBuffer", () => {
  it("takes one batch larger than the limit into an empty queue, then overflows", async () => {
    const buffer = new WatchBuffer(5);
    assert.equal(buffer.push(batch(7, 12)), true);
    assert.equal(buffer.push(batch(8, 1)), false);
    await assert.rejects(buffer.next(), (error: unknown) => {
      assert.ok(error instanceof CorralError);
      assert.equal(error.code, ErrorCode.ResourceExhausted);
      assert.equal(error.details.resumeRevision, "7");
      return true;
    });
  });

  it("holds exactly the limit without failing", async () => {
    const buffer = new WatchBuffer(3);
    for (let revision = 1; revision <= 3; revision++) assert.equal(buffer.push(batch(revision, 1)), true);
    assert.equal((await buffer.next())?.[0]?.revision, 1);
    assert.equal(buffer.push(batch(4, 1)), true);
  });

  it("wakes a waiting consumer on push and ends it on close", async () => {
    const buffer = new WatchBuffer(10);
    const waiting = buffer.next();
    buffer.push(batch(1, 2));
    assert.equal((await waiting)?.length, 2);
    const ending = buffer.next();
    buffer.close();
    assert.equal(await ending, undefined);
    assert.equal(buffer.push(batch(2, 1)), false);
  });
});
