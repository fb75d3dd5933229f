import { writeFile } from "node:fs/promises";
import { join } from "node:path";
import { parseDuration } from "../base/duration.ts";
import { defaults } from "../defaults.ts";
import type { CertificateAuthority } from "../security/certificate-authority.ts";
import { readIfExists, writeSecretFile } from "../security/pem.ts";
import { operatorIdentityUri } from "../security/principal.ts";

/**
 * On first start the controller writes client credentials for the first admin into its data dir
 * (`admin/`: client.crt, client.key, ca.crt), so the operator can use the cluster listener at once.
 */
export async function ensureAdminCredentials(ca: CertificateAuthority, dataDir: string): Promise<string> {
  const dir = join(dataDir, "admin");
  if ((await readIfExists(join(dir, "client.crt"))) !== undefined) return dir;
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
  await writeFile(join(dir, "ca.crt"), ca.certificatePem, { mode: 0o644 });
  return dir;
}
