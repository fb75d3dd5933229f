import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { readSealingKey, seal, unseal, writeSealingKey } from "../../src/security/ca-key-file.ts";
import { effectiveState, initialState, rotatedState } from "../../src/security/ca-state.ts";

describe("the key that seals CA keys in the store", () => {
  let dir: string;
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), "corral-sealing-"));
  });
  after(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it("reads 32 bytes as base64, hex or raw, and refuses anything else", async () => {
    const bytes = randomBytes(32);
    for (const [name, contents] of [
      ["b64", `${bytes.toString("base64")}\n`],
      ["hex", bytes.toString("hex")],
      ["raw", bytes],
    ] as const) {
      await writeFile(join(dir, name), contents, { mode: 0o600 });
      assert.deepEqual((await readSealingKey(join(dir, name))).bytes, bytes, name);
    }
    await writeFile(join(dir, "short"), randomBytes(16).toString("base64"), { mode: 0o600 });
    await assert.rejects(readSealingKey(join(dir, "short")), /ca\.keyFile: .* does not hold a 32-byte key/);
    await assert.rejects(readSealingKey(join(dir, "missing")), /ca\.keyFile: cannot read/);
  });

  it("refuses a key file others can read", async () => {
    await writeFile(join(dir, "open"), randomBytes(32).toString("hex"), { mode: 0o644 });
    await assert.rejects(readSealingKey(join(dir, "open")), /can be read by others \(mode 644\)/);
  });

  it("opens what it sealed, and nothing sealed by another key or for another CA", async () => {
    const key = await writeSealingKey(join(dir, "k1"));
    const other = await writeSealingKey(join(dir, "k2"));
    const box = seal(key, "-----BEGIN PRIVATE KEY-----secret", "sha256:aa");
    assert.doesNotMatch(JSON.stringify(box), /secret/);
    assert.equal(unseal(key, box, "sha256:aa"), "-----BEGIN PRIVATE KEY-----secret");
    assert.throws(() => unseal(other, box, "sha256:aa"), /does not open the cluster's CA key/);
    assert.throws(() => unseal(key, box, "sha256:bb"), /does not open with/);
    const tampered = { ...box, data: Buffer.from("x".repeat(20)).toString("base64") };
    assert.throws(() => unseal(key, tampered, "sha256:aa"), /does not open with/);
  });
});

describe("CA state during a rotation", () => {
  const record = (id: string) => ({
    id,
    fingerprint: `sha256:${id}`,
    certificatePem: id,
    key: { file: `${id}.key` },
    createdAt: 0,
  });

  it("trusts both CAs until the overlap ends, then only the new one, with no write needed", () => {
    const start = initialState(record("old"));
    const rotating = rotatedState(start, record("new"), 1_000, 500, "admin");
    assert.deepEqual(
      rotating.cas.map((ca) => ca.id),
      ["old", "new"],
    );
    assert.equal(rotating.issuing, "new");
    assert.equal(rotating.presenting, "old");
    assert.equal(effectiveState(rotating, 1_499), rotating);
    const done = effectiveState(rotating, 1_500);
    assert.deepEqual(
      done.cas.map((ca) => ca.id),
      ["new"],
    );
    assert.equal(done.presenting, "new");
    assert.equal(done.rotation, undefined);
  });
});
