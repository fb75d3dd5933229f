// @peculiar/x509 resolves its ASN.1 schemas through tsyringe, which needs the Reflect metadata API.
import "reflect-metadata";
import { createHash, webcrypto } from "node:crypto";
import * as x509 from "@peculiar/x509";

export type CryptoKey = webcrypto.CryptoKey;
export type CryptoKeyPair = webcrypto.CryptoKeyPair;
type X509Crypto = Parameters<typeof x509.cryptoProvider.set>[0];
export type X509Key = Parameters<typeof x509.SubjectKeyIdentifierExtension.create>[0];

x509.cryptoProvider.set(webcrypto as unknown as X509Crypto);

export { x509 };
export const ecdsa = { name: "ECDSA", namedCurve: "P-256" } as const;
export const ecdsaSigning = { name: "ECDSA", hash: "SHA-256" } as const;

export function generateKeyPair(): Promise<CryptoKeyPair> {
  return webcrypto.subtle.generateKey(ecdsa, true, ["sign", "verify"]) as Promise<CryptoKeyPair>;
}

/** `sha256:<hex>` of a public key's SubjectPublicKeyInfo: what an operator compares when accepting a node. */
export function publicKeyFingerprint(spki: ArrayBuffer | Uint8Array): string {
  const bytes = spki instanceof Uint8Array ? spki : new Uint8Array(spki);
  return `sha256:${createHash("sha256").update(bytes).digest("hex")}`;
}
