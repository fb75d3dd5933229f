import assert from "node:assert/strict";
import { test } from "node:test";
import { mergeStreams } from "../../src/rpc/merge-streams.ts";

const tick = () => new Promise((resolve) => setTimeout(resolve, 1));

async function* numbers(from: number, count: number, log?: string[]): AsyncGenerator<number> {
  try {
    for (let i = 0; i < count; i += 1) {
      await tick();
      yield from + i;
    }
  } finally {
    log?.push(`closed ${from}`);
  }
}

test("every item of every source comes through, each source in its own order", async () => {
  const seen: number[] = [];
  for await (const n of mergeStreams([numbers(0, 5), numbers(100, 3), numbers(200, 0)])) seen.push(n);
  assert.deepEqual(
    seen.filter((n) => n < 100),
    [0, 1, 2, 3, 4],
  );
  assert.deepEqual(
    seen.filter((n) => n >= 100),
    [100, 101, 102],
  );
});

test("a failing source fails the merge and the others are closed", async () => {
  const log: string[] = [];
  async function* failing(): AsyncGenerator<number> {
    await tick();
    yield -1;
    throw new Error("source broke");
  }
  const seen: number[] = [];
  await assert.rejects(
    (async () => {
      for await (const n of mergeStreams([numbers(0, 1000, log), failing()])) seen.push(n);
    })(),
    /source broke/,
  );
  assert.ok(seen.includes(-1));
  await tick();
  await tick();
  assert.deepEqual(log, ["closed 0"]);
});

test("leaving early closes the sources", async () => {
  const log: string[] = [];
  for await (const n of mergeStreams([numbers(0, 1000, log), numbers(5000, 1000, log)])) if (n >= 3) break;
  await tick();
  await tick();
  assert.deepEqual(log.sort(), ["closed 0", "closed 5000"]);
});
