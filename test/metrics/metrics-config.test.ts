import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { resolveControllerConfig } from "../../src/controller/config.ts";

describe("metrics settings in the controller YAML", () => {
  it("defaults to a 10 s push interval and an hour of history", () => {
    const config = resolveControllerConfig({}, "/tmp");
    assert.deepEqual(config.metrics, { intervalMs: 10_000, historySamples: 360 });
  });

  it("reads metrics.interval and metrics.historySamples, and names a bad key", () => {
    const config = resolveControllerConfig({ metrics: { interval: "2s", historySamples: 1800 } }, "/tmp");
    assert.deepEqual(config.metrics, { intervalMs: 2_000, historySamples: 1_800 });
    assert.throws(
      () => resolveControllerConfig({ metrics: { historySamples: 0 } }, "/tmp"),
      /metrics\.historySamples/,
    );
    assert.throws(
      () => resolveControllerConfig({ metrics: { interval: "soon" } }, "/tmp"),
      /metrics\.interval/,
    );
    assert.throws(
      () => resolveControllerConfig({ metrics: { keep: 1 } }, "/tmp"),
      /metrics\.keep: is not a known key/,
    );
  });
});
