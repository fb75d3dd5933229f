import { create } from "@bufbuild/protobuf";
import { timestampFromMs } from "@bufbuild/protobuf/wkt";
import type { JoinRequestRecord } from "../../core/admission/join-request.ts";
import {
  type CaInfo,
  CaInfoSchema,
  type CaRotation,
  CaRotationSchema,
  type CertificateInfo,
  CertificateInfoSchema,
  CertificateKind,
  type CertificateRequest,
  CertificateRequestSchema,
  CertificateStatus,
  type ExpiryWarning,
  ExpiryWarningSchema,
} from "../../gen/corral/v1/certificates_pb.ts";
import type { CertificateAuthority } from "../../security/certificate-authority.ts";
import type { ExpiryNotice } from "../../security/certificate-book.ts";
import type { CertificateKind as Kind, ListedCertificate } from "../../security/certificate-inventory.ts";
import { certificateFingerprint } from "../../security/pem.ts";
import { x509 } from "../../security/x509-setup.ts";
import { pendingJoinMessage } from "./join-request-message.ts";

/** What the messages read of the CA (the certificates face's wire shapes of it). */
type CaView = Pick<
  CertificateAuthority,
  "trustedCertificates" | "issuingFingerprint" | "fingerprint" | "state"
>;

const kindToEnum: Record<Kind, CertificateKind> = {
  node: CertificateKind.NODE,
  operator: CertificateKind.OPERATOR,
  controller: CertificateKind.CONTROLLER,
  server: CertificateKind.SERVER,
};
export const kindFromEnum: Partial<Record<CertificateKind, Kind>> = {
  [CertificateKind.NODE]: "node",
  [CertificateKind.OPERATOR]: "operator",
  [CertificateKind.CONTROLLER]: "controller",
  [CertificateKind.SERVER]: "server",
};
const statusToEnum = {
  valid: CertificateStatus.VALID,
  expired: CertificateStatus.EXPIRED,
  revoked: CertificateStatus.REVOKED,
  untrusted: CertificateStatus.UNTRUSTED,
} as const;

export function certificateMessage(
  listed: ListedCertificate,
  options: { current: boolean; nodeName?: string },
): CertificateInfo {
  const { record, revocation, status } = listed;
  return create(CertificateInfoSchema, {
    serial: record.serial,
    kind: kindToEnum[record.kind],
    subject: record.subject,
    commonName: record.commonName,
    dnsNames: [...record.dnsNames],
    ipAddresses: [...record.ipAddresses],
    uris: [...record.uris],
    notBefore: timestampFromMs(record.notBefore),
    notAfter: timestampFromMs(record.notAfter),
    fingerprint: record.fingerprint,
    caFingerprint: record.caFingerprint,
    status: statusToEnum[status],
    issuedAt: timestampFromMs(record.issuedAt),
    nodeId: record.nodeId ?? "",
    nodeName: options.nodeName ?? "",
    operatorRole: record.operator?.role ?? "",
    operatorName: record.operator?.name ?? "",
    revocationReason: revocation?.reason ?? "",
    ...(revocation === undefined ? {} : { revokedAt: timestampFromMs(revocation.at) }),
    revokedBy: revocation?.by ?? "",
    current: options.current,
  });
}

export function caMessages(ca: CaView): CaInfo[] {
  return ca.trustedCertificates().map((certificate) => {
    const fingerprint = certificateFingerprint(new Uint8Array(certificate.rawData));
    return create(CaInfoSchema, {
      fingerprint,
      subject: certificate.subject,
      notBefore: timestampFromMs(certificate.notBefore.getTime()),
      notAfter: timestampFromMs(certificate.notAfter.getTime()),
      certificatePem: certificate.toString("pem"),
      issuing: fingerprint === ca.issuingFingerprint,
      presenting: fingerprint === ca.fingerprint,
    });
  });
}

export function rotationMessage(ca: CaView): CaRotation {
  const state = ca.state;
  const rotation = state.rotation;
  if (rotation === undefined) return create(CaRotationSchema, { inProgress: false });
  const fingerprintOf = (id: string) => state.cas.find((c) => c.id === id)?.fingerprint ?? "";
  return create(CaRotationSchema, {
    inProgress: true,
    startedAt: timestampFromMs(rotation.startedAt),
    overlapEndsAt: timestampFromMs(rotation.overlapEndsAt),
    previousFingerprint: fingerprintOf(rotation.previous),
    nextFingerprint: fingerprintOf(state.issuing),
    startedBy: rotation.by,
  });
}

export function requestMessage(record: JoinRequestRecord): CertificateRequest {
  let subject = "";
  let algorithm = "";
  try {
    const csr = new x509.Pkcs10CertificateRequest(record.csrPem);
    subject = csr.subject;
    const key = csr.publicKey.algorithm as { name?: string; namedCurve?: string };
    algorithm = [key.name, key.namedCurve].filter(Boolean).join(" ");
  } catch {
    // A request only reaches the book after its CSR parsed; an old record may lack it.
  }
  return create(CertificateRequestSchema, {
    request: pendingJoinMessage(record),
    csrSubject: subject,
    keyAlgorithm: algorithm,
    keyFingerprint: record.keyFingerprint,
  });
}

export function warningMessage(notice: ExpiryNotice): ExpiryWarning {
  const { record, authority } = notice;
  if (record !== undefined) {
    return create(ExpiryWarningSchema, {
      serial: record.serial,
      kind: kindToEnum[record.kind],
      subject: record.subject,
      notAfter: timestampFromMs(record.notAfter),
      caFingerprint: record.caFingerprint,
      message: notice.message,
    });
  }
  return create(ExpiryWarningSchema, {
    subject: authority?.subject ?? "",
    ...(authority === undefined ? {} : { notAfter: timestampFromMs(authority.notAfter.getTime()) }),
    caFingerprint: authority === undefined ? "" : certificateFingerprint(new Uint8Array(authority.rawData)),
    message: notice.message,
  });
}
