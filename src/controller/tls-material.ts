import { hostname, networkInterfaces } from "node:os";
import type { HostPort } from "../base/address.ts";
import type { Logger } from "../observability/logger.ts";
import type { CertificateAuthority, IssuedCertificate } from "../security/certificate-authority.ts";
import { RotatingCertificates } from "../security/tls-credentials.ts";

const serverCertificateLifetimeMs = 30 * 86_400_000;

/**
 * The cluster listener's certificate, issued by the controller's CA at every start: valid for the
 * names and addresses clients are likely to dial (loopback, the host name, every local address).
 */
export function issueControllerCertificate(
  ca: CertificateAuthority,
  nodeName: string,
  listen: HostPort,
  by?: "issuing",
  /** Also valid for these (the advertised host: a name or an address that is not local, behind NAT). */
  alsoFor: readonly string[] = [],
): Promise<IssuedCertificate> {
  const ips = new Set(["127.0.0.1", "::1"]);
  for (const addresses of Object.values(networkInterfaces())) {
    for (const address of addresses ?? []) ips.add(address.address.replace(/%.*$/, ""));
  }
  const dns = new Set(["localhost", hostname()]);
  if (/^[\d.]+$/.test(listen.host) || listen.host.includes(":")) {
    if (listen.host !== "0.0.0.0" && listen.host !== "::") ips.add(listen.host);
  } else dns.add(listen.host);
  for (const host of alsoFor) {
    if (/^[\d.]+$/.test(host) || host.includes(":")) ips.add(host);
    else dns.add(host);
  }
  return ca.issue(
    {
      commonName: nodeName,
      dnsNames: [...dns],
      ipAddresses: [...ips],
      validityMs: serverCertificateLifetimeMs,
      usage: "both",
    },
    by,
  );
}

/** The cluster listener's TLS material, kept current with the CA and the certificate's own lifetime. */
export interface ListenerTls {
  readonly certificates: RotatingCertificates;
  /** The certificate served now (the web listener takes it at start). */
  current(): IssuedCertificate;
  close(): void;
}

/**
 * What the cluster listener presents and trusts: its own certificate from the presenting CA with that
 * CA at the end of the chain (so a joining node learns the root from the handshake and checks its pin),
 * and the whole trust bundle for client certificates. A rotation swaps both for new connections, with no
 * restart; the certificate is also issued again before it runs out.
 */
export async function controllerListenerTls(
  ca: CertificateAuthority,
  nodeName: string,
  listen: HostPort,
  logger?: Logger,
  alsoFor: readonly string[] = [],
): Promise<ListenerTls> {
  let certificate = await issueControllerCertificate(ca, nodeName, listen, undefined, alsoFor);
  const chain = (issued: IssuedCertificate) =>
    `${issued.certificatePem.trimEnd()}\n${ca.presentingCertificatePem.trimEnd()}\n`;
  const certificates = new RotatingCertificates(
    ca.certificatePem,
    chain(certificate),
    certificate.privateKeyPem,
  );
  let renewing = false;
  const renew = (reason: string) => {
    if (renewing) return;
    renewing = true;
    issueControllerCertificate(ca, nodeName, listen, undefined, alsoFor)
      .then((issued) => {
        certificate = issued;
        certificates.update(ca.certificatePem, chain(issued), issued.privateKeyPem);
        logger?.info(
          { reason, caFingerprint: issued.caFingerprint },
          "the cluster listener has a new certificate",
        );
      })
      .catch((error: unknown) =>
        logger?.error({ err: error }, "could not issue the cluster listener a certificate"),
      )
      .finally(() => {
        renewing = false;
      });
  };
  // During a rotation, the certificate to present once the overlap ends is ready in advance, so the
  // swap happens in the same turn as the CA change: no member can fetch the new bundle and meet the old
  // certificate in between.
  let next: IssuedCertificate | undefined;
  const prepare = () => {
    if (ca.issuingFingerprint === ca.fingerprint || next?.caFingerprint === ca.issuingFingerprint) return;
    issueControllerCertificate(ca, nodeName, listen, "issuing", alsoFor)
      .then((issued) => {
        next = issued;
      })
      .catch((error: unknown) =>
        logger?.warn({ err: error }, "could not prepare the listener's next certificate"),
      );
  };
  prepare();
  const stopFollowing = ca.onChange((change) => {
    if (change.presentingChanged || certificate.caFingerprint !== ca.fingerprint) {
      if (next !== undefined && next.caFingerprint === ca.fingerprint) {
        certificate = next;
        next = undefined;
        certificates.update(ca.certificatePem, chain(certificate), certificate.privateKeyPem);
        logger?.info(
          { caFingerprint: certificate.caFingerprint },
          "the cluster listener presents the new CA",
        );
      } else renew("the CA changed");
    } else if (change.bundleChanged) {
      certificates.update(ca.certificatePem, chain(certificate), certificate.privateKeyPem);
    }
    if (change.issuingChanged) prepare();
  });
  const check = setInterval(() => {
    if (certificate.notAfter.getTime() - Date.now() < serverCertificateLifetimeMs / 3)
      renew("it nears its end");
  }, 3_600_000);
  check.unref();
  return {
    certificates,
    current: () => certificate,
    close() {
      stopFollowing();
      clearInterval(check);
    },
  };
}
