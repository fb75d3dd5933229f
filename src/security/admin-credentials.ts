import { X509Certificate } from "node:crypto";
import { writeFile } from "node:fs/promises";
import { join } from "node:path";
import { parseDuration } from "../base/duration.ts";
import { defaults } from "../defaults.ts";
import type { CertificateAuthority } from "./certificate-authority.ts";
import { certificateFingerprint, readIfExists, writeSecretFile } from "./pem.ts";
import { operatorIdentityUri } from "./principal.ts";

/**
 * The first admin's client credentials in the controller's data dir (`admin/`: client.crt, client.key,
 * ca.crt), so the operator can use the cluster listener at once. Written on first start, issued again
 * when a rotation changes the issuing CA.
 */
export const adminCredentialsDir = (dataDir: string): string => join(dataDir, "admin");

/**
 * The one place the admin's certificate is issued: first start and rotation must give the same
 * identity and lifetime, or a rotation would quietly change what the first admin may do.
 */
export async function issueAdminCertificate(ca: CertificateAuthority, dir: string): Promise<void> {
  const issued = await ca.issue({
    commonName: "admin",
    dnsNames: [],
    ipAddresses: [],
    uris: [operatorIdentityUri("admin", "admin")],
    validityMs: parseDuration(defaults.identity.adminCertificateLifetime),
    usage: "client",
  });
  await writeSecretFile(join(dir, "client.key"), issued.privateKeyPem);
  await writeFile(join(dir, "client.crt"), issued.certificatePem, { mode: 0o644 });
}

/** Writes the admin credentials unless they exist; returns their directory. */
export async function ensureAdminCredentials(ca: CertificateAuthority, dataDir: string): Promise<string> {
  const dir = adminCredentialsDir(dataDir);
  if ((await readIfExists(join(dir, "client.crt"))) !== undefined) return dir;
  await issueAdminCertificate(ca, dir);
  await writeFile(join(dir, "ca.crt"), ca.certificatePem, { mode: 0o644 });
  return dir;
}

/**
 * ca.crt follows the trust bundle; when the issuing CA changes (a rotation), the client certificate is
 * issued again by it, so the first admin is not locked out when the overlap ends.
 */
export async function refreshAdminCredentials(
  ca: CertificateAuthority,
  dataDir: string,
  reissue: boolean,
): Promise<void> {
  const dir = adminCredentialsDir(dataDir);
  const current = await readIfExists(join(dir, "client.crt"));
  if (current === undefined) return;
  if (reissue && !issuedByCurrentCa(ca, current)) await issueAdminCertificate(ca, dir);
  await writeFile(join(dir, "ca.crt"), ca.certificatePem, { mode: 0o644 });
}

/** Whether `certificatePem` was signed by the CA that issues now. */
function issuedByCurrentCa(ca: CertificateAuthority, certificatePem: string): boolean {
  const issuing = ca
    .trustedCertificates()
    .find((c) => certificateFingerprint(new Uint8Array(c.rawData)) === ca.issuingFingerprint);
  return (
    issuing !== undefined &&
    new X509Certificate(certificatePem).verify(new X509Certificate(Buffer.from(issuing.rawData)).publicKey)
  );
}
