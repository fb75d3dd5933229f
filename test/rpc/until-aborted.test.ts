import assert from "node:assert/strict";
import { getEventListeners } from "node:events";
import { describe, it } from "node:test";
import { untilAborted } from "../../src/base/until-aborted.ts";

/** A source that yields what is pushed and otherwise waits, as a client stream does. */
function pushable<T>() {
  const items: T[] = [];
  let wake: (() => void) | undefined;
  let returned = false;
  return {
    push(item: T) {
      items.push(item);
      wake?.();
    },
    get returned() {
      return returned;
    },
    source: {
      async *[Symbol.asyncIterator]() {
        try {
          for (;;) {
            const item = items.shift();
            if (item !== undefined) yield item;
            else
              await new Promise<void>((resolve) => {
                wake = resolve;
              });
          }
        } finally {
          returned = true;
        }
      },
    },
  };
}

describe("untilAborted", () => {
  it("passes every item through and ends with the source", async () => {
    async function* three() {
      yield* [1, 2, 3];
    }
    const seen: number[] = [];
    for await (const n of untilAborted(three(), new AbortController().signal)) seen.push(n);
    assert.deepEqual(seen, [1, 2, 3]);
  });

  it("ends while waiting for the next item once the signal aborts, and lets the source go", async () => {
    const input = pushable<number>();
    const abort = new AbortController();
    const seen: number[] = [];
    const reading = (async () => {
      for await (const n of untilAborted(input.source, abort.signal)) seen.push(n);
    })();
    input.push(1);
    input.push(2);
    await new Promise((resolve) => setTimeout(resolve, 20));
    abort.abort();
    await reading;
    assert.deepEqual(seen, [1, 2]);
    input.push(3); // the parked next() settles; the source is then closed
    await new Promise((resolve) => setTimeout(resolve, 20));
    assert.equal(input.returned, true);
  });

  it("leaves no abort listener behind, however many items pass", async () => {
    async function* many() {
      for (let i = 0; i < 10_000; i++) yield i;
    }
    const abort = new AbortController();
    let count = 0;
    for await (const _ of untilAborted(many(), abort.signal)) {
      count++;
      if (count % 1_000 === 0) assert.ok(getEventListeners(abort.signal, "abort").length <= 1);
    }
    assert.equal(count, 10_000);
    assert.equal(getEventListeners(abort.signal, "abort").length, 0);
  });
});
