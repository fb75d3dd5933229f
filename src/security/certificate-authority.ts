// @peculiar/x509 resolves its ASN.1 schemas through tsyringe, which needs the Reflect metadata API.
import "reflect-metadata";
import { webcrypto } from "node:crypto";
import { writeFile } from "node:fs/promises";
import { join } from "node:path";
import * as x509 from "@peculiar/x509";
import { CorralError } from "../core/errors.ts";
import { certificateFingerprint, pemDecode, privateKeyToPem, readIfExists, writeSecretFile } from "./pem.ts";

type CryptoKey = webcrypto.CryptoKey;
type CryptoKeyPair = webcrypto.CryptoKeyPair;
type X509Crypto = Parameters<typeof x509.cryptoProvider.set>[0];
type X509Key = Parameters<typeof x509.SubjectKeyIdentifierExtension.create>[0];

x509.cryptoProvider.set(webcrypto as unknown as X509Crypto);

const ecdsa = { name: "ECDSA", namedCurve: "P-256" } as const;
const signing = { name: "ECDSA", hash: "SHA-256" } as const;
const day = 86_400_000;

export interface IssuedCertificate {
  readonly certificatePem: string;
  readonly privateKeyPem: string;
  readonly notAfter: Date;
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
    const keys = (await webcrypto.subtle.generateKey(ecdsa, true, ["sign", "verify"])) as CryptoKeyPair;
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
    await writeSecretFile(
      keyPath,
      await privateKeyToPem(webcrypto.subtle, keys.privateKey as webcrypto.CryptoKey),
    );
    await writeFile(certPath, certificate.toString("pem"), { mode: 0o644 });
    return new CertificateAuthority(certificate, keys.privateKey);
  }

  /** Issues a key pair and a certificate signed by this CA. */
  async issue(request: ServerCertificateRequest): Promise<IssuedCertificate> {
    const keys = (await webcrypto.subtle.generateKey(ecdsa, true, ["sign", "verify"])) as CryptoKeyPair;
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
    const certificate = await x509.X509CertificateGenerator.create({
      serialNumber: randomSerial(),
      subject: `CN=${escapeDn(request.commonName)}, O=corral`,
      issuer: this.#certificate.subject,
      notBefore: new Date(now - 60_000),
      notAfter,
      publicKey: keys.publicKey,
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
    return {
      certificatePem: certificate.toString("pem"),
      privateKeyPem: await privateKeyToPem(webcrypto.subtle, keys.privateKey as webcrypto.CryptoKey),
      notAfter,
    };
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
