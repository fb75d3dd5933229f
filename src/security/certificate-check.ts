import { X509Certificate } from "node:crypto";
import { CorralError } from "../base/errors.ts";
import { defaults } from "../defaults.ts";
import type { CertificateAuthority } from "./certificate-authority.ts";
import { type CertificateRecord, type Revocation, recordOf } from "./certificate-inventory.ts";
import { certificateFingerprint } from "./pem.ts";
import { x509 } from "./x509-setup.ts";

export interface CertificateCheck {
  readonly valid: boolean;
  /** What the certificate says (caId/caFingerprint: the trusted CA it chains to, or "" when none). */
  readonly record: CertificateRecord;
  readonly chainsToCa: boolean;
  readonly expired: boolean;
  readonly notYetValid: boolean;
  readonly revocation: Revocation | undefined;
  readonly known: boolean;
  readonly problems: readonly string[];
}

/** The first certificate of a PEM text; INVALID_ARGUMENT naming `field` for anything else. */
export function parseCertificatePem(pem: string, field = "pem"): x509.X509Certificate {
  if (pem.trim() === "") throw CorralError.invalidArgument(field, "is empty; give a PEM certificate");
  if (Buffer.byteLength(pem) > defaults.certificates.maxPemBytes) {
    throw CorralError.invalidArgument(field, `is larger than ${defaults.certificates.maxPemBytes} bytes`);
  }
  const block = /-----BEGIN CERTIFICATE-----([\s\S]*?)-----END CERTIFICATE-----/.exec(pem);
  if (block?.[1] === undefined) {
    throw CorralError.invalidArgument(field, "holds no PEM certificate (-----BEGIN CERTIFICATE-----)");
  }
  const body = block[1].replace(/\s+/g, "");
  if (!/^[A-Za-z0-9+/]+={0,2}$/.test(body)) {
    throw CorralError.invalidArgument(field, "the PEM block is not base64");
  }
  try {
    return new x509.X509Certificate(Buffer.from(body, "base64"));
  } catch (error) {
    throw CorralError.invalidArgument(field, `is not an X.509 certificate: ${(error as Error).message}`);
  }
}

/** Does the certificate chain to a CA this cluster trusts now, is it within its validity, was it revoked. */
export async function checkCertificate(
  pem: string,
  ca: CertificateAuthority,
  now: number,
): Promise<CertificateCheck> {
  const certificate = parseCertificatePem(pem);
  const der = Buffer.from(certificate.rawData);
  const node = new X509Certificate(der);
  const issuer = ca.trustedCertificates().find((candidate) => {
    const authority = new X509Certificate(Buffer.from(candidate.rawData));
    return node.checkIssued(authority) && node.verify(authority.publicKey);
  });
  const issuerFingerprint =
    issuer === undefined ? "" : certificateFingerprint(new Uint8Array(issuer.rawData));
  const record = recordOf(
    certificate,
    { id: issuerFingerprint.slice(7, 23), fingerprint: issuerFingerprint },
    certificate.notBefore.getTime(),
  );
  const known = (await ca.inventory?.get(record.serial)) !== undefined;
  // Only a certificate of ours can have been revoked here: a foreign serial could collide with one.
  const revocation = issuer === undefined ? undefined : await ca.inventory?.revocation(record.serial);
  const expired = now >= record.notAfter;
  const notYetValid = now < record.notBefore;
  const problems: string[] = [];
  if (issuer === undefined) {
    problems.push(
      `it does not chain to this cluster's CA (issuer: ${certificate.issuer}); trusted: ${ca
        .trustedCertificates()
        .map((c) => certificateFingerprint(new Uint8Array(c.rawData)))
        .join(", ")}`,
    );
  }
  if (expired) problems.push(`it expired at ${new Date(record.notAfter).toISOString()}`);
  if (notYetValid) problems.push(`it is not valid before ${new Date(record.notBefore).toISOString()}`);
  if (revocation !== undefined) {
    problems.push(
      `it was revoked at ${new Date(revocation.at).toISOString()}${revocation.by ? ` by ${revocation.by}` : ""}${revocation.reason ? `: ${revocation.reason}` : ""}`,
    );
  }
  return {
    valid: problems.length === 0,
    record,
    chainsToCa: issuer !== undefined,
    expired,
    notYetValid,
    revocation,
    known,
    problems,
  };
}
