import { CorralError } from "../base/errors.ts";
import type { Store } from "../store/store.ts";
import type { Op } from "../store/types.ts";
import { certificateFingerprint } from "./pem.ts";
import { principalFromUri } from "./principal.ts";
import type { x509 } from "./x509-setup.ts";

export const certificateKinds = ["node", "operator", "controller", "server"] as const;
/** node: an agent's identity; operator: a person or tool; controller: a controller dialing agents; server: a listener. */
export type CertificateKind = (typeof certificateKinds)[number];
/** untrusted: signed by a CA that a rotation retired. */
export type CertificateStatus = "valid" | "expired" | "revoked" | "untrusted";

/** What the controller remembers of every certificate it issued (never the private key). */
export interface CertificateRecord {
  readonly serial: string;
  readonly kind: CertificateKind;
  readonly commonName: string;
  readonly subject: string;
  readonly dnsNames: readonly string[];
  readonly ipAddresses: readonly string[];
  readonly uris: readonly string[];
  readonly notBefore: number;
  readonly notAfter: number;
  readonly fingerprint: string;
  readonly caId: string;
  readonly caFingerprint: string;
  /** When it was signed: unlike notBefore, not backdated. */
  readonly issuedAt: number;
  readonly nodeId?: string;
  readonly operator?: { readonly role: string; readonly name: string };
}

export interface Revocation {
  readonly reason: string;
  readonly at: number;
  readonly by?: string;
}

export interface RenewalRequest {
  readonly requestedAt: number;
  readonly by: string;
}

export const certificatePrefix = "/certificates/";
export const revokedPrefix = "/revoked-certificates/";
export const renewalPrefix = "/certificate-renewals/";

export function normalizeSerial(serial: string): string {
  return serial
    .trim()
    .toLowerCase()
    .replace(/:/g, "")
    .replace(/^0+(?=.)/, "");
}

/** The inventory record of a freshly signed certificate. */
export function recordOf(
  certificate: x509.X509Certificate,
  ca: { id: string; fingerprint: string },
  issuedAt: number,
): CertificateRecord {
  const names = sanOf(certificate);
  const principal = names.uris.map((uri) => principalFromUri(uri, "")).find((p) => p !== undefined);
  const kind: CertificateKind =
    principal?.kind === "node" || principal?.kind === "operator" || principal?.kind === "controller"
      ? principal.kind
      : "server";
  return {
    serial: normalizeSerial(certificate.serialNumber),
    kind,
    commonName: /CN=((?:\\.|[^,])*)/.exec(certificate.subject)?.[1]?.replace(/\\(.)/g, "$1") ?? "",
    subject: certificate.subject,
    ...names,
    notBefore: certificate.notBefore.getTime(),
    notAfter: certificate.notAfter.getTime(),
    fingerprint: certificateFingerprint(new Uint8Array(certificate.rawData)),
    caId: ca.id,
    caFingerprint: ca.fingerprint,
    issuedAt,
    ...(principal?.kind === "node" ? { nodeId: principal.nodeId } : {}),
    ...(principal?.kind === "operator" ? { operator: { role: principal.role, name: principal.name } } : {}),
  };
}

export function sanOf(certificate: x509.X509Certificate): {
  dnsNames: string[];
  ipAddresses: string[];
  uris: string[];
} {
  const san = certificate.getExtension("2.5.29.17") as x509.SubjectAlternativeNameExtension | null;
  const items = san?.names.items ?? [];
  return {
    dnsNames: items.filter((n) => n.type === "dns").map((n) => n.value),
    ipAddresses: items.filter((n) => n.type === "ip").map((n) => n.value),
    uris: items.filter((n) => n.type === "url").map((n) => n.value),
  };
}

export function statusOf(record: CertificateRecord, revoked: boolean, now: number): CertificateStatus {
  if (revoked) return "revoked";
  return now >= record.notAfter ? "expired" : "valid";
}

export interface ListedCertificate {
  readonly record: CertificateRecord;
  readonly revocation?: Revocation;
  readonly status: CertificateStatus;
}

/** Every certificate issued, revocations and renewal requests: all in the store, so every controller sees them. */
export class CertificateInventory {
  readonly #store: Store;

  constructor(store: Store) {
    this.#store = store;
  }

  putOp(record: CertificateRecord): Op {
    return { type: "put", key: certificatePrefix + record.serial, value: JSON.stringify(record) };
  }

  async record(record: CertificateRecord): Promise<void> {
    await this.#store.commit({ ops: [this.putOp(record)] });
  }

  async get(serial: string): Promise<CertificateRecord | undefined> {
    const kv = await this.#store.get(certificatePrefix + normalizeSerial(serial));
    return kv === undefined ? undefined : (JSON.parse(kv.value) as CertificateRecord);
  }

  async revocation(serial: string): Promise<Revocation | undefined> {
    const kv = await this.#store.get(revokedPrefix + normalizeSerial(serial));
    return kv === undefined ? undefined : (JSON.parse(kv.value) as Revocation);
  }

  /** Every record and every revocation, read in pages so no single read is unbounded. */
  async all(now: number): Promise<ListedCertificate[]> {
    const [records, revocations] = await Promise.all([
      this.#readAll(certificatePrefix),
      this.#readAll(revokedPrefix),
    ]);
    const revokedBySerial = new Map(
      revocations.map((kv) => [kv.key.slice(revokedPrefix.length), JSON.parse(kv.value) as Revocation]),
    );
    return records.map((kv) => {
      const record = JSON.parse(kv.value) as CertificateRecord;
      const revocation = revokedBySerial.get(record.serial);
      return {
        record,
        ...(revocation === undefined ? {} : { revocation }),
        status: statusOf(record, revocation !== undefined, now),
      };
    });
  }

  async #readAll(prefix: string) {
    const out: { key: string; value: string }[] = [];
    let startAfter: string | undefined;
    for (let page = 0; page < 10_000; page++) {
      const result = await this.#store.list(prefix, {
        limit: 1_000,
        ...(startAfter === undefined ? {} : { startAfter }),
      });
      out.push(...result.items);
      if (!result.more || result.items.length === 0) break;
      startAfter = result.items[result.items.length - 1]?.key;
    }
    return out;
  }

  async revoke(serial: string, reason: string, by: string, now: number): Promise<void> {
    const value: Revocation = { reason, at: now, by };
    await this.#store.commit({
      ops: [{ type: "put", key: revokedPrefix + normalizeSerial(serial), value: JSON.stringify(value) }],
    });
  }

  async requestRenewal(nodeId: string, by: string, now: number): Promise<RenewalRequest> {
    const value: RenewalRequest = { requestedAt: now, by };
    await this.#store.commit({
      ops: [{ type: "put", key: renewalPrefix + encodeURIComponent(nodeId), value: JSON.stringify(value) }],
    });
    return value;
  }

  async renewalRequest(nodeId: string): Promise<RenewalRequest | undefined> {
    const kv = await this.#store.get(renewalPrefix + encodeURIComponent(nodeId));
    return kv === undefined ? undefined : (JSON.parse(kv.value) as RenewalRequest);
  }

  /**
   * Forgets certificates that expired more than `keepMs` ago, with their revocations (an expired
   * certificate fails the TLS handshake anyway). Bounded per call.
   */
  async prune(now: number, keepMs: number): Promise<number> {
    const listed = await this.all(now);
    const old = listed.filter((c) => c.record.notAfter + keepMs < now).slice(0, 1_000);
    if (old.length === 0) return 0;
    await this.#store.commit({
      ops: old.flatMap((c): Op[] => [
        { type: "delete", key: certificatePrefix + c.record.serial },
        { type: "delete", key: revokedPrefix + c.record.serial },
      ]),
    });
    return old.length;
  }
}

export function assertSerial(serial: string, field = "serial"): string {
  const normalized = normalizeSerial(serial);
  if (!/^[0-9a-f]{1,64}$/.test(normalized)) {
    throw CorralError.invalidArgument(field, `"${serial}" is not a certificate serial number (hex)`);
  }
  return normalized;
}
