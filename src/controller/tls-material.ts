import { hostname, networkInterfaces } from "node:os";
import type { HostPort } from "../core/address.ts";
import type { CertificateAuthority, IssuedCertificate } from "../security/certificate-authority.ts";

const serverCertificateLifetimeMs = 30 * 86_400_000;

/**
 * The cluster listener's certificate, issued by the controller's CA at every start: valid for the
 * names and addresses clients are likely to dial (loopback, the host name, every local address).
 */
export function issueControllerCertificate(
  ca: CertificateAuthority,
  nodeName: string,
  listen: HostPort,
): Promise<IssuedCertificate> {
  const ips = new Set(["127.0.0.1", "::1"]);
  for (const addresses of Object.values(networkInterfaces())) {
    for (const address of addresses ?? []) ips.add(address.address.replace(/%.*$/, ""));
  }
  const dns = new Set(["localhost", hostname()]);
  if (/^[\d.]+$/.test(listen.host) || listen.host.includes(":")) {
    if (listen.host !== "0.0.0.0" && listen.host !== "::") ips.add(listen.host);
  } else dns.add(listen.host);
  return ca.issue({
    commonName: nodeName,
    dnsNames: [...dns],
    ipAddresses: [...ips],
    validityMs: serverCertificateLifetimeMs,
    usage: "both",
  });
}
