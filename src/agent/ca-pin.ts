import { X509Certificate } from "node:crypto";
import { connect, type DetailedPeerCertificate } from "node:tls";
import type { HostPort } from "../base/address.ts";
import { CorralError } from "../base/errors.ts";
import { certificateFingerprint } from "../security/pem.ts";

export interface PinnedCa {
  readonly caPem: string;
  readonly fingerprint: string;
  /** True when nothing was pinned in advance and the CA was trusted on first use. */
  readonly trustedOnFirstUse: boolean;
}

/**
 * Learns the controller's CA from its TLS handshake (the controller sends its CA after its own
 * certificate) and checks it against the pin — a fingerprint from the command line or a token. Without
 * a pin the CA is trusted on first use, and the caller prints the fingerprint for the operator to check.
 */
export function fetchControllerCa(
  address: HostPort,
  pin: string | undefined,
  timeoutMs = 10_000,
): Promise<PinnedCa> {
  const expected = pin === undefined ? undefined : normalizeFingerprint(pin);
  return new Promise((resolve, reject) => {
    const socket = connect({
      host: address.host,
      port: address.port,
      // Verified below against the pin, not against the system's CAs (it is a private CA).
      rejectUnauthorized: false,
      ALPNProtocols: ["h2"],
      timeout: timeoutMs,
    });
    const fail = (error: CorralError) => {
      socket.destroy();
      reject(error);
    };
    socket.once("timeout", () =>
      fail(
        new CorralError(
          "UNAVAILABLE",
          `the controller at ${address.host}:${address.port} did not answer in ${timeoutMs} ms`,
        ),
      ),
    );
    socket.once("error", (error) =>
      fail(
        new CorralError(
          "UNAVAILABLE",
          `cannot reach the controller at ${address.host}:${address.port}: ${error.message}`,
        ),
      ),
    );
    socket.once("secureConnect", () => {
      try {
        resolve(checkChain(socket.getPeerCertificate(true), expected));
      } catch (error) {
        reject(error);
      } finally {
        socket.end();
      }
    });
  });
}

function checkChain(leaf: DetailedPeerCertificate, expected: string | undefined): PinnedCa {
  if (leaf.raw === undefined) throw new CorralError("UNAVAILABLE", "the controller presented no certificate");
  let root = leaf;
  for (
    let depth = 0;
    depth < 8 && root.issuerCertificate !== undefined && root.issuerCertificate !== root;
    depth++
  ) {
    root = root.issuerCertificate;
  }
  const ca = new X509Certificate(root.raw);
  const server = new X509Certificate(leaf.raw);
  if (!ca.ca || !server.checkIssued(ca) || !server.verify(ca.publicKey)) {
    throw new CorralError(
      "UNAVAILABLE",
      "the controller did not present a certificate chain ending in its CA",
    );
  }
  const fingerprint = certificateFingerprint(new Uint8Array(ca.raw));
  if (expected !== undefined && fingerprint !== expected) {
    throw new CorralError(
      "UNAUTHENTICATED",
      `the controller's CA is ${fingerprint}, not the pinned ${expected}: refusing to join (wrong address, or someone in between)`,
    );
  }
  return { caPem: ca.toString(), fingerprint, trustedOnFirstUse: expected === undefined };
}

export function normalizeFingerprint(text: string): string {
  const hex = text
    .trim()
    .toLowerCase()
    .replace(/^sha256:/, "")
    .replace(/:/g, "");
  if (!/^[0-9a-f]{64}$/.test(hex)) {
    throw CorralError.invalidArgument(
      "--ca-fingerprint",
      `"${text}" is not a sha256 fingerprint (sha256:<64 hex digits>)`,
    );
  }
  return `sha256:${hex}`;
}
