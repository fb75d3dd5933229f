import { webcrypto } from "node:crypto";
import { writeFile } from "node:fs/promises";
import { join } from "node:path";
import { CorralError } from "../core/errors.ts";
import { certificateFingerprint, pemDecode, privateKeyToPem, readIfExists, writeSecretFile } from "./pem.ts";
import {
  type CryptoKey,
  ecdsa,
  generateKeyPair,
  publicKeyFingerprint,
  ecdsaSigning as signing,
  type X509Key,
  x509,
} from "./x509-setup.ts";

const day = 86_400_000;

export interface IssuedCertificate {
  readonly certificatePem: string;
  readonly privateKeyPem: string;
  readonly notAfter: Date;
  readonly serialNumber: string;
}

export interface ServerCertificateRequest {
  readonly commonName: string;
  readonly dnsNames: readonly string[];
  readonly ipAddresses: readonly string[];
  /** SAN URIs, e.g. `corral://node/<id>` for a node's identity. */
  readonly uris?: readonly string[];
  readonly validityMs: number;
  readonly usage: "server" | "client" | "both";
}

/**
 * The controller's own certificate authority: ECDSA P-256, created on first start, its key kept in the
 * data dir with mode 0600. Every certificate in the cluster chains to it.
 */
export class CertificateAuthority {
  readonly certificatePem: string;
  readonly fingerprint: string;
  readonly #certificate: x509.X509Certificate;
  readonly #key: CryptoKey;

  private constructor(certificate: x509.X509Certificate, key: CryptoKey) {
    this.#certificate = certificate;
    this.#key = key;
    this.certificatePem = certificate.toString("pem");
    this.fingerprint = certificateFingerprint(new Uint8Array(certificate.rawData));
  }

  /** Loads the CA from `dir` (ca.crt, ca.key), creating it on first use. */
  static async loadOrCreate(dir: string, clusterName: string): Promise<CertificateAuthority> {
    const certPath = join(dir, "ca.crt");
    const keyPath = join(dir, "ca.key");
    const [certPem, keyPem] = await Promise.all([readIfExists(certPath), readIfExists(keyPath)]);
    if (certPem !== undefined && keyPem !== undefined) {
      const key = await webcrypto.subtle.importKey("pkcs8", pemDecode(keyPem, "PRIVATE KEY"), ecdsa, false, [
        "sign",
      ]);
      return new CertificateAuthority(new x509.X509Certificate(certPem), key as CryptoKey);
    }
    if (certPem !== undefined || keyPem !== undefined) {
      throw new CorralError(
        "FAILED_PRECONDITION",
        `${dir} holds only one of ca.crt and ca.key; restore the missing file or move both away to create a new CA`,
      );
    }
    const keys = await generateKeyPair();
    const now = Date.now();
    const certificate = await x509.X509CertificateGenerator.createSelfSigned({
      serialNumber: randomSerial(),
      name: `CN=corral CA ${escapeDn(clusterName)}, O=corral`,
      notBefore: new Date(now - 60_000),
      notAfter: new Date(now + 3650 * day),
      keys,
      signingAlgorithm: signing,
      extensions: [
        new x509.BasicConstraintsExtension(true, 0, true),
        new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign, true),
        await x509.SubjectKeyIdentifierExtension.create(keys.publicKey as unknown as X509Key),
      ],
    });
    await writeSecretFile(keyPath, await privateKeyToPem(webcrypto.subtle, keys.privateKey));
    await writeFile(certPath, certificate.toString("pem"), { mode: 0o644 });
    return new CertificateAuthority(certificate, keys.privateKey);
  }

  /** Issues a key pair and a certificate signed by this CA. */
  async issue(request: ServerCertificateRequest): Promise<IssuedCertificate> {
    const keys = await generateKeyPair();
    const certificate = await this.#sign(keys.publicKey as unknown as X509Key, request);
    return {
      certificatePem: certificate.toString("pem"),
      privateKeyPem: await privateKeyToPem(webcrypto.subtle, keys.privateKey),
      notAfter: certificate.notAfter,
      serialNumber: certificate.serialNumber,
    };
  }

  /**
   * Signs the key in a PKCS#10 request: the requester proves it holds the key (the CSR's signature),
   * and the CA decides everything else (names, lifetime, purpose) — nothing in the CSR but the key is used.
   */
  async signRequest(csrPem: string, request: ServerCertificateRequest): Promise<SignedCertificate> {
    const csr = parseCsr(csrPem);
    if (!(await csr.verify())) {
      throw CorralError.invalidArgument("csr_pem", "the request's signature does not match its key");
    }
    const algorithm = csr.publicKey.algorithm as { name?: string; namedCurve?: string };
    if (algorithm.name !== "ECDSA" || algorithm.namedCurve !== "P-256") {
      throw CorralError.invalidArgument("csr_pem", "the key must be ECDSA P-256");
    }
    const certificate = await this.#sign(csr.publicKey as unknown as X509Key, request);
    return {
      certificatePem: certificate.toString("pem"),
      notAfter: certificate.notAfter,
      serialNumber: certificate.serialNumber,
      keyFingerprint: publicKeyFingerprint(csr.publicKey.rawData),
    };
  }

  async #sign(publicKey: X509Key, request: ServerCertificateRequest): Promise<x509.X509Certificate> {
    const now = Date.now();
    const notAfter = new Date(now + request.validityMs);
    const names: x509.JsonGeneralName[] = [
      ...request.dnsNames.map((value) => ({ type: "dns" as const, value })),
      ...request.ipAddresses.map((value) => ({ type: "ip" as const, value })),
      ...(request.uris ?? []).map((value) => ({ type: "url" as const, value })),
    ];
    const purposes = {
      server: [x509.ExtendedKeyUsage.serverAuth],
      client: [x509.ExtendedKeyUsage.clientAuth],
      both: [x509.ExtendedKeyUsage.serverAuth, x509.ExtendedKeyUsage.clientAuth],
    }[request.usage];
    // Backdated a little for clocks that run behind, but never by a large part of a short lifetime,
    // or renewal at two thirds of (notAfter - notBefore) would come too early.
    const backdate = Math.min(60_000, Math.max(0, request.validityMs) / 20);
    const certificate = await x509.X509CertificateGenerator.create({
      serialNumber: randomSerial(),
      subject: `CN=${escapeDn(request.commonName)}, O=corral`,
      issuer: this.#certificate.subject,
      notBefore: new Date(now - backdate),
      notAfter,
      publicKey,
      signingKey: this.#key,
      signingAlgorithm: signing,
      extensions: [
        new x509.BasicConstraintsExtension(false, undefined, true),
        new x509.KeyUsagesExtension(
          x509.KeyUsageFlags.digitalSignature | x509.KeyUsageFlags.keyAgreement,
          true,
        ),
        new x509.ExtendedKeyUsageExtension(purposes),
        new x509.SubjectAlternativeNameExtension(names),
        await x509.AuthorityKeyIdentifierExtension.create(this.#certificate),
      ],
    });
    return certificate;
  }
}

export interface SignedCertificate {
  readonly certificatePem: string;
  readonly notAfter: Date;
  readonly serialNumber: string;
  readonly keyFingerprint: string;
}

export function parseCsr(csrPem: string): x509.Pkcs10CertificateRequest {
  try {
    return new x509.Pkcs10CertificateRequest(csrPem);
  } catch (error) {
    throw new CorralError("INVALID_ARGUMENT", "csr_pem: not a PEM PKCS#10 certificate request", {
      cause: error,
    });
  }
}

function randomSerial(): string {
  const bytes = webcrypto.getRandomValues(new Uint8Array(16));
  bytes[0] = (bytes[0] ?? 0) & 0x7f; // positive INTEGER
  return Buffer.from(bytes).toString("hex");
}

function escapeDn(value: string): string {
  return value.replace(/([,+"\\<>;=])/g, "\\$1");
}
