import { createHash, type webcrypto } from "node:crypto";
import { chmod, mkdir, readFile, writeFile } from "node:fs/promises";
import { dirname } from "node:path";

export function pemEncode(label: string, der: ArrayBuffer | Uint8Array): string {
  const base64 = Buffer.from(der instanceof Uint8Array ? der : new Uint8Array(der)).toString("base64");
  const lines = base64.match(/.{1,64}/g) ?? [];
  return `-----BEGIN ${label}-----\n${lines.join("\n")}\n-----END ${label}-----\n`;
}

export function pemDecode(pem: string, label: string): Uint8Array {
  const match = new RegExp(`-----BEGIN ${label}-----([\\s\\S]*?)-----END ${label}-----`).exec(pem);
  if (match?.[1] === undefined) throw new Error(`no ${label} block in PEM`);
  return new Uint8Array(Buffer.from(match[1].replace(/\s+/g, ""), "base64"));
}

export async function privateKeyToPem(
  subtle: webcrypto.SubtleCrypto,
  key: webcrypto.CryptoKey,
): Promise<string> {
  return pemEncode("PRIVATE KEY", await subtle.exportKey("pkcs8", key));
}

/** `sha256:<hex>` of a certificate's DER, the form operators pin (`--ca-fingerprint`). */
export function certificateFingerprint(der: Uint8Array): string {
  return `sha256:${createHash("sha256").update(der).digest("hex")}`;
}

/** Writes a secret so that only the owner can read it, from the first byte on. */
export async function writeSecretFile(path: string, contents: string): Promise<void> {
  await mkdir(dirname(path), { recursive: true, mode: 0o700 });
  await writeFile(path, contents, { mode: 0o600 });
  await chmod(path, 0o600);
}

export async function readIfExists(path: string): Promise<string | undefined> {
  try {
    return await readFile(path, "utf8");
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === "ENOENT") return undefined;
    throw error;
  }
}
