import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { ErrorCode } from "../../src/base/errors.ts";
import type { NodeRecord } from "../../src/core/nodes/node.ts";
import { decodeStoredNode, encodeNode, nodeFromJson, nodeToJson } from "../../src/core/nodes/node-codec.ts";
import { rejectsWith } from "./core-fixture.ts";

const node: NodeRecord = {
  id: "0b6c1c3e-1f7e-4a51-9a38-111111111111",
  name: "My Controller",
  role: "controller",
  address: "::1",
  port: 10564,
  metadata: {
    text: { kind: "string", value: "héllo \u{1F600}" },
    blob: { kind: "bytes", value: new Uint8Array([0, 255, 1, 128, 7]) },
    min: { kind: "int", value: -(2n ** 63n) },
    max: { kind: "uint", value: 2n ** 64n - 1n },
    nan: { kind: "double", value: Number.NaN },
    negativeZero: { kind: "double", value: -0 },
    infinite: { kind: "double", value: Number.NEGATIVE_INFINITY },
    small: { kind: "float", value: Math.fround(0.1) },
    flag: { kind: "bool", value: false },
  },
  services: ["HUB_SERVER", "PIPELINES"],
  resources: {
    cpuCores: 8,
    memoryMb: 16384,
    gpus: [{ name: "A100", memoryMb: 40960, uuid: "GPU-1" }],
    maxLayers: 80,
    usedLayers: 12,
    disks: [{ mount: "/", sizeBytes: 512_000_000_000 }],
  },
  labels: { zone: "eu-1" },
  status: "ready",
  createdAt: 1_767_225_600_000,
  updatedAt: 1_767_225_601_000,
  lastSeenAt: 1_767_225_602_000,
  version: "0.1.0",
};

describe("node JSON", () => {
  it("round-trips every metadata kind exactly, -0 and NaN included", () => {
    const decoded = nodeFromJson(JSON.parse(encodeNode(node)));
    assert.deepStrictEqual(decoded, node);
    assert.ok(Object.is(decoded.metadata.negativeZero?.value, -0));
    assert.equal(Object.getPrototypeOf(decoded.metadata.blob?.value), Uint8Array.prototype);
  });

  it("writes bytes as base64 and 64-bit integers as decimal strings", () => {
    const json = JSON.parse(encodeNode(node));
    assert.deepEqual(json.metadata.blob, { kind: "bytes", value: "AP8BgAc=" });
    assert.deepEqual(json.metadata.min, { kind: "int", value: "-9223372036854775808" });
    assert.deepEqual(json.metadata.max, { kind: "uint", value: "18446744073709551615" });
    assert.deepEqual(json.metadata.nan, { kind: "double", value: "NaN" });
    assert.deepEqual(nodeToJson(node).name, "My Controller");
  });

  it("names the field it cannot decode", async () => {
    const json = JSON.parse(encodeNode(node));
    json.metadata.min.value = 5;
    await rejectsWith(
      Promise.resolve().then(() => nodeFromJson(json)),
      ErrorCode.InvalidArgument,
      "node.metadata.min.value",
    );
    const badBytes = JSON.parse(encodeNode(node));
    badBytes.metadata.blob.value = "not base64!";
    await rejectsWith(
      Promise.resolve().then(() => nodeFromJson(badBytes)),
      ErrorCode.InvalidArgument,
      "node.metadata.blob.value",
    );
    const badStatus = { ...JSON.parse(encodeNode(node)), status: "zombie" };
    await rejectsWith(
      Promise.resolve().then(() => nodeFromJson(badStatus)),
      ErrorCode.InvalidArgument,
      "node.status",
    );
  });

  it("reports a corrupt stored record as INTERNAL naming its key", async () => {
    await rejectsWith(
      Promise.resolve().then(() => decodeStoredNode("{not json", "/nodes/abc")),
      ErrorCode.Internal,
      "/nodes/abc",
    );
  });
});
