import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { runCorral } from "../helpers/corral-processes.ts";

describe("runCorral (the one CLI runner the tests share)", () => {
  it("reports the exit status and what the CLI wrote", async () => {
    const result = await runCorral(["frobnicate"]);
    assert.equal(result.code, 2);
    assert.equal(result.timedOut, false);
    assert.match(result.stderr, /frobnicate/);
    assert.equal(result.stdout, "");
  });

  it("leaves out the caller's CORRAL_* settings and passes the ones given", async () => {
    process.env.CORRAL_SERVER = "127.0.0.1:2";
    try {
      const plain = await runCorral(["status"]);
      assert.doesNotMatch(plain.stderr, /127\.0\.0\.1:2\b/, "the test's own CORRAL_SERVER steered the CLI");
      const given = await runCorral(["status"], { env: { CORRAL_SERVER: "127.0.0.1:1" } });
      assert.equal(given.code, 3);
      assert.match(given.stderr, /cannot reach the controller at 127\.0\.0\.1:1/);
    } finally {
      delete process.env.CORRAL_SERVER;
    }
  });
});
