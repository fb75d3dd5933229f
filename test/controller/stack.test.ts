import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { assemble, Stack } from "../../src/controller/stack.ts";

describe("the controller's stack of closers", () => {
  it("closes in reverse order of starting, an adopted stack as one entry in its place", async () => {
    const closed: string[] = [];
    const inner = new Stack();
    inner.defer(() => void closed.push("inner 1"));
    inner.defer(async () => void closed.push("inner 2"));
    const outer = new Stack();
    outer.defer(() => void closed.push("first"));
    outer.adopt(inner);
    outer.defer(() => void closed.push("last"));
    await outer.close();
    assert.deepEqual(closed, ["last", "inner 2", "inner 1", "first"]);
    await outer.close();
    assert.equal(closed.length, 4, "a closer runs once");
  });

  it("close stops at the first failure and throws it; unwind goes on past failures", async () => {
    const closed: string[] = [];
    const build = () => {
      const stack = new Stack();
      stack.defer(() => void closed.push("a"));
      stack.defer(() => {
        throw new Error("b failed");
      });
      stack.defer(() => void closed.push("c"));
      return stack;
    };
    await assert.rejects(build().close(), /b failed/);
    assert.deepEqual(closed, ["c"]);
    closed.length = 0;
    await build().unwind();
    assert.deepEqual(closed, ["c", "a"]);
  });

  it("an assembler that throws half way stops what it had started, and the error goes on", async () => {
    const closed: string[] = [];
    await assert.rejects(
      assemble(async (stack) => {
        stack.defer(() => void closed.push("started"));
        throw new Error("cannot listen");
      }),
      /cannot listen/,
    );
    assert.deepEqual(closed, ["started"]);
    const built = await assemble((stack) => {
      stack.defer(() => void closed.push("second"));
      return { value: 42 };
    });
    assert.equal(built.value, 42);
    await built.stack.close();
    assert.deepEqual(closed, ["started", "second"]);
  });
});
