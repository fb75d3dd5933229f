import { webcrypto } from "node:crypto";
import { CorralError } from "../base/errors.ts";
import { certificateFingerprint, pemDecode, privateKeyToPem } from "./pem.ts";
import {
  type CryptoKey,
  ecdsa,
  generateKeyPair,
  ecdsaSigning as signing,
  type X509Key,
  x509,
} from "./x509-setup.ts";

const day = 86_400_000;

export interface ServerCertificateRequest {
  readonly commonName: string;
  readonly dnsNames: readonly string[];
  readonly ipAddresses: readonly string[];
  /** SAN URIs, e.g. `corral://node/<id>` for a node's identity. */
  readonly uris?: readonly string[];
  readonly validityMs: number;
  readonly usage: "server" | "client" | "both";
}

/** One CA key and its self-signed certificate: what signs. Which CA signs what is the cluster CA's call. */
export class CaSigner {
  readonly certificate: x509.X509Certificate;
  readonly certificatePem: string;
  readonly fingerprint: string;
  /** Short and stable: the first 16 hex digits of the fingerprint. */
  readonly id: string;
  readonly #key: CryptoKey;

  private constructor(certificate: x509.X509Certificate, key: CryptoKey) {
    this.certificate = certificate;
    this.#key = key;
    this.certificatePem = certificate.toString("pem");
    this.fingerprint = certificateFingerprint(new Uint8Array(certificate.rawData));
    this.id = this.fingerprint.slice("sha256:".length, "sha256:".length + 16);
  }

  /** A new CA: ECDSA P-256, ten years. */
  static async create(clusterName: string, now = Date.now()): Promise<{ signer: CaSigner; keyPem: string }> {
    const keys = await generateKeyPair();
    const certificate = await x509.X509CertificateGenerator.createSelfSigned({
      serialNumber: randomSerial(),
      // Time and a random tag keep a rotated CA's name apart from its successor's: TLS stacks look
      // issuers up by name.
      name: `CN=corral CA ${escapeDn(clusterName)} ${new Date(now).toISOString().slice(0, 19)}Z ${randomSerial().slice(0, 6)}, O=corral`,
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
    return {
      signer: new CaSigner(certificate, keys.privateKey),
      keyPem: await privateKeyToPem(webcrypto.subtle, keys.privateKey),
    };
  }

  /** Loads a CA from PEM, checking that the key belongs to the certificate. */
  static async fromPem(certificatePem: string, keyPem: string, where: string): Promise<CaSigner> {
    let certificate: x509.X509Certificate;
    let key: CryptoKey;
    try {
      certificate = new x509.X509Certificate(certificatePem);
      key = (await webcrypto.subtle.importKey("pkcs8", pemDecode(keyPem, "PRIVATE KEY"), ecdsa, true, [
        "sign",
      ])) as CryptoKey;
    } catch (error) {
      throw new CorralError("FAILED_PRECONDITION", `${where}: not a CA certificate and key in PEM`, {
        cause: error,
      });
    }
    const signer = new CaSigner(certificate, key);
    if (!(await signer.#keyMatchesCertificate())) {
      throw new CorralError(
        "FAILED_PRECONDITION",
        `${where}: the private key does not belong to the CA certificate ${signer.fingerprint}`,
      );
    }
    return signer;
  }

  async #keyMatchesCertificate(): Promise<boolean> {
    const probe = new Uint8Array([1, 2, 3]);
    const signature = await webcrypto.subtle.sign(signing, this.#key, probe);
    const publicKey = await this.certificate.publicKey.export(ecdsa, ["verify"]);
    return webcrypto.subtle.verify(signing, publicKey as CryptoKey, signature, probe);
  }

  /** A certificate for `publicKey`, named and limited as `request` says. */
  async sign(publicKey: X509Key, request: ServerCertificateRequest): Promise<x509.X509Certificate> {
    const now = Date.now();
    const notAfter = new Date(Math.min(now + request.validityMs, this.certificate.notAfter.getTime()));
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
    return x509.X509CertificateGenerator.create({
      serialNumber: randomSerial(),
      subject: `CN=${escapeDn(request.commonName)}, O=corral`,
      issuer: this.certificate.subject,
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
        await x509.AuthorityKeyIdentifierExtension.create(this.certificate),
      ],
    });
  }
}

function randomSerial(): string {
  const bytes = webcrypto.getRandomValues(new Uint8Array(16));
  bytes[0] = ((bytes[0] ?? 0) & 0x7f) | 0x01; // positive INTEGER, and no leading zero byte to lose
  return Buffer.from(bytes).toString("hex");
}

export function escapeDn(value: string): string {
  return value.replace(/([,+"\\<>;=])/g, "\\$1");
}
