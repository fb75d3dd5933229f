import { createCipheriv, createDecipheriv, createHash, randomBytes } from "node:crypto";
import { readFile, stat } from "node:fs/promises";
import { CorralError } from "../base/errors.ts";
import { writeSecretFile } from "./pem.ts";

/**
 * The key that seals the CA's private keys where several controllers share them (the etcd store):
 * 32 bytes in a file that every controller is given (`ca.keyFile`), never in the store. Whoever reads
 * etcd without that file sees the CA certificates, not the keys.
 */
export interface SealingKey {
  readonly bytes: Buffer;
  /** sha256 of the key, first 8 hex digits: names which key sealed a box, without revealing it. */
  readonly id: string;
  readonly path: string;
}

/** A sealed private key as it sits in the store (AES-256-GCM, base64 fields). */
export interface SealedBox {
  readonly alg: "aes-256-gcm";
  readonly kid: string;
  readonly iv: string;
  readonly tag: string;
  readonly data: string;
}

/** Reads `ca.keyFile`: base64 or hex text of 32 bytes, or the 32 bytes themselves; owner-only permissions. */
export async function readSealingKey(path: string): Promise<SealingKey> {
  let raw: Buffer;
  try {
    const info = await stat(path);
    if ((info.mode & 0o077) !== 0) {
      throw CorralError.invalidArgument(
        "ca.keyFile",
        `${path} can be read by others (mode ${(info.mode & 0o777).toString(8)}); chmod 600 it`,
      );
    }
    raw = await readFile(path);
  } catch (error) {
    if (error instanceof CorralError) throw error;
    throw CorralError.invalidArgument("ca.keyFile", `cannot read ${path}: ${(error as Error).message}`);
  }
  const bytes = decodeKey(raw);
  if (bytes === undefined) {
    throw CorralError.invalidArgument(
      "ca.keyFile",
      `${path} does not hold a 32-byte key (base64 or hex text, or 32 raw bytes); make one with \`corral certs keygen ${path}\``,
    );
  }
  return { bytes, id: keyId(bytes), path };
}

/** Writes a fresh sealing key (base64) that only the owner can read. */
export async function writeSealingKey(path: string): Promise<SealingKey> {
  const bytes = randomBytes(32);
  await writeSecretFile(path, `${bytes.toString("base64")}\n`);
  return { bytes, id: keyId(bytes), path };
}

function decodeKey(raw: Buffer): Buffer | undefined {
  if (raw.length === 32) return raw;
  const text = raw.toString("utf8").trim();
  if (/^[0-9a-fA-F]{64}$/.test(text)) return Buffer.from(text, "hex");
  if (/^[A-Za-z0-9+/_-]{42,44}={0,2}$/.test(text)) {
    const bytes = Buffer.from(text, text.includes("-") || text.includes("_") ? "base64url" : "base64");
    if (bytes.length === 32) return bytes;
  }
  return undefined;
}

function keyId(bytes: Buffer): string {
  return createHash("sha256").update(bytes).digest("hex").slice(0, 8);
}

/** `label` (the CA's fingerprint) is bound to the box, so a sealed key cannot be moved to another CA record. */
export function seal(key: SealingKey, plaintext: string, label: string): SealedBox {
  const iv = randomBytes(12);
  const cipher = createCipheriv("aes-256-gcm", key.bytes, iv);
  cipher.setAAD(Buffer.from(label));
  const data = Buffer.concat([cipher.update(plaintext, "utf8"), cipher.final()]);
  return {
    alg: "aes-256-gcm",
    kid: key.id,
    iv: iv.toString("base64"),
    tag: cipher.getAuthTag().toString("base64"),
    data: data.toString("base64"),
  };
}

export function unseal(key: SealingKey, box: SealedBox, label: string): string {
  if (box.kid !== key.id) {
    throw new CorralError(
      "FAILED_PRECONDITION",
      `ca.keyFile ${key.path} (key ${key.id}) does not open the cluster's CA key, sealed with key ${box.kid}: give every controller the same key file`,
    );
  }
  try {
    const decipher = createDecipheriv("aes-256-gcm", key.bytes, Buffer.from(box.iv, "base64"));
    decipher.setAAD(Buffer.from(label));
    decipher.setAuthTag(Buffer.from(box.tag, "base64"));
    return Buffer.concat([decipher.update(Buffer.from(box.data, "base64")), decipher.final()]).toString(
      "utf8",
    );
  } catch (error) {
    throw new CorralError(
      "FAILED_PRECONDITION",
      `the CA key sealed in the store does not open with ${key.path}: it was changed or belongs to another CA record`,
      { cause: error },
    );
  }
}
