import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { metadataEquals, metadataMatches } from "../../src/core/nodes/metadata.ts";
import type { MetadataValue } from "../../src/core/nodes/node.ts";

describe("metadata equality", () => {
  it("needs the same kind, not just the same value", () => {
    assert.equal(metadataEquals({ kind: "int", value: 1n }, { kind: "int", value: 1n }), true);
    assert.equal(metadataEquals({ kind: "int", value: 1n }, { kind: "uint", value: 1n }), false);
    assert.equal(metadataEquals({ kind: "string", value: "1" }, { kind: "int", value: 1n }), false);
    assert.equal(metadataEquals({ kind: "double", value: 1 }, { kind: "float", value: 1 }), false);
    assert.equal(metadataEquals({ kind: "bool", value: true }, { kind: "bool", value: false }), false);
  });

  it("compares bytes byte by byte", () => {
    const a: MetadataValue = { kind: "bytes", value: new Uint8Array([1, 2, 3]) };
    assert.equal(metadataEquals(a, { kind: "bytes", value: new Uint8Array([1, 2, 3]) }), true);
    assert.equal(metadataEquals(a, { kind: "bytes", value: new Uint8Array([1, 2, 4]) }), false);
    assert.equal(metadataEquals(a, { kind: "bytes", value: new Uint8Array([1, 2]) }), false);
    assert.equal(metadataEquals(a, { kind: "string", value: "\u0001\u0002\u0003" }), false);
  });

  it("compares floats at float32 precision and lets NaN find NaN", () => {
    assert.equal(
      metadataEquals({ kind: "float", value: 0.1 }, { kind: "float", value: Math.fround(0.1) }),
      true,
    );
    assert.equal(
      metadataEquals({ kind: "double", value: 0.1 }, { kind: "double", value: Math.fround(0.1) }),
      false,
    );
    assert.equal(
      metadataEquals({ kind: "double", value: Number.NaN }, { kind: "double", value: Number.NaN }),
      true,
    );
  });

  it("matches a filter only when every key is present and equal", () => {
    const metadata: Record<string, MetadataValue> = {
      zone: { kind: "string", value: "eu" },
      rack: { kind: "int", value: 4n },
    };
    assert.equal(metadataMatches(metadata, {}), true);
    assert.equal(metadataMatches(metadata, { zone: { kind: "string", value: "eu" } }), true);
    assert.equal(
      metadataMatches(metadata, { zone: { kind: "string", value: "eu" }, rack: { kind: "int", value: 5n } }),
      false,
    );
    assert.equal(metadataMatches(metadata, { missing: { kind: "bool", value: false } }), false);
  });
});
