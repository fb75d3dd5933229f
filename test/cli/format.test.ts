import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { create } from "@bufbuild/protobuf";
import { renderFields } from "../../src/cli/output.ts";
import { formatSpan, metadataText, shortFingerprint } from "../../src/client/format.ts";
import { MetadataValueSchema } from "../../src/gen/corral/v1/nodes_pb.ts";

describe("CLI formatting", () => {
  it("prints spans the way kubectl prints ages", () => {
    assert.deepEqual(
      [0, 999, 45_000, 60_000, 312_000, 3_600_000, 11_040_000, 86_400_000, 183_600_000, -5].map(formatSpan),
      ["0s", "0s", "45s", "1m", "5m12s", "1h", "3h4m", "1d", "2d3h", "0s"],
    );
  });

  it("prints metadata as sorted k=v, short bytes as hex and long ones as their length", () => {
    const value = (v: Parameters<typeof create<typeof MetadataValueSchema>>[1]) =>
      create(MetadataValueSchema, v);
    const text = metadataText({
      s: value({ value: { case: "stringValue", value: "gpu" } }),
      b: value({ value: { case: "bytesValue", value: new Uint8Array([0, 1, 0xfe]) } }),
      long: value({ value: { case: "bytesValue", value: new Uint8Array(17) } }),
      sixteen: value({ value: { case: "bytesValue", value: new Uint8Array(16).fill(0x11) } }),
      i: value({ value: { case: "intValue", value: -3n } }),
      u: value({ value: { case: "uintValue", value: 18_446_744_073_709_551_615n } }),
      f: value({ value: { case: "boolValue", value: false } }),
      d: value({ value: { case: "doubleValue", value: 0.5 } }),
      unset: value({}),
    });
    assert.equal(
      text,
      `b=0x0001fe,d=0.5,f=false,i=-3,long=<17 bytes>,s=gpu,sixteen=0x${"11".repeat(16)},u=18446744073709551615,unset=<unset>`,
    );
    assert.equal(metadataText({}), "-");
  });

  it("shortens fingerprints for tables only when there is something to shorten", () => {
    assert.equal(shortFingerprint(`sha256:${"ab".repeat(32)}`), `sha256:${"ab".repeat(8)}…`);
    assert.equal(shortFingerprint("sha256:abcd"), "sha256:abcd");
    assert.equal(shortFingerprint(""), "-");
    assert.equal(shortFingerprint("not a fingerprint"), "not a fingerprint");
  });

  it("aligns key: value lines and nests lists", () => {
    assert.equal(
      renderFields([
        ["name", "a"],
        ["last seen", "5s ago"],
        ["labels", [["zone", "eu-1"]]],
        ["metadata", []],
      ]),
      "name:       a\nlast seen:  5s ago\nlabels:\n  zone:  eu-1\nmetadata:  -\n",
    );
  });
});
