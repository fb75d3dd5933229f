import { webcrypto } from "node:crypto";
import { pemDecode, privateKeyToPem } from "./pem.ts";
import { ecdsa, ecdsaSigning, generateKeyPair, publicKeyFingerprint, x509 } from "./x509-setup.ts";

/** A fresh ECDSA P-256 key and a PKCS#10 request for it, for joining or renewing. */
export async function createKeyAndCsr(
  commonName: string,
): Promise<{ privateKeyPem: string; csrPem: string; keyFingerprint: string }> {
  const keys = await generateKeyPair();
  const csr = await x509.Pkcs10CertificateRequestGenerator.create({
    name: `CN=${commonName.replace(/([,+"\\<>;=])/g, "\\$1")}`,
    keys,
    signingAlgorithm: ecdsaSigning,
  });
  const spki = await webcrypto.subtle.exportKey("spki", keys.publicKey);
  return {
    privateKeyPem: await privateKeyToPem(webcrypto.subtle, keys.privateKey),
    csrPem: csr.toString("pem"),
    keyFingerprint: publicKeyFingerprint(spki),
  };
}

/** When a certificate stops being valid, and when it should be renewed (two thirds of its life). */
export function certificateTimes(certificatePem: string): {
  notBefore: number;
  notAfter: number;
  renewAt: number;
} {
  const certificate = new x509.X509Certificate(certificatePem);
  const notBefore = certificate.notBefore.getTime();
  const notAfter = certificate.notAfter.getTime();
  return { notBefore, notAfter, renewAt: notBefore + ((notAfter - notBefore) * 2) / 3 };
}

export async function importPrivateKey(pem: string): Promise<webcrypto.CryptoKey> {
  return webcrypto.subtle.importKey("pkcs8", pemDecode(pem, "PRIVATE KEY"), ecdsa, true, ["sign"]);
}
