import { setTimeout as sleep } from "node:timers/promises";
import { create } from "@bufbuild/protobuf";
import { timestampFromMs } from "@bufbuild/protobuf/wkt";
import type { ServiceImpl } from "@connectrpc/connect";
import { parseDuration } from "../../base/duration.ts";
import { CorralError } from "../../base/errors.ts";
import type { JoinRequestRecord } from "../../core/admission/join-request.ts";
import { defaults } from "../../defaults.ts";
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
  type CertificatesService,
  type ExpiryWarning,
  ExpiryWarningSchema,
} from "../../gen/corral/v1/certificates_pb.ts";
import { principalOf } from "../../rpc/principal-context.ts";
import type { CertificateAuthority } from "../../security/certificate-authority.ts";
import { checkCertificate } from "../../security/certificate-check.ts";
import {
  assertSerial,
  type CertificateInventory,
  type CertificateRecord,
  type CertificateKind as Kind,
  type ListedCertificate,
} from "../../security/certificate-inventory.ts";
import { certificateFingerprint } from "../../security/pem.ts";
import { describePrincipal } from "../../security/principal.ts";
import { x509 } from "../../security/x509-setup.ts";
import type { FaceContext } from "../face-context.ts";
import { pendingJoinMessage } from "./join-request-message.ts";

const day = 86_400_000;

const kindToEnum: Record<Kind, CertificateKind> = {
  node: CertificateKind.NODE,
  operator: CertificateKind.OPERATOR,
  controller: CertificateKind.CONTROLLER,
  server: CertificateKind.SERVER,
};
const kindFromEnum: Partial<Record<CertificateKind, Kind>> = {
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

function inventoryOf(ca: CertificateAuthority): CertificateInventory {
  if (ca.inventory === undefined) {
    throw new CorralError("FAILED_PRECONDITION", "this controller's CA keeps no inventory");
  }
  return ca.inventory;
}

/** Which certificates are in use: a node's, a listener's or a controller's newest valid one; every valid operator one. */
function currentSerials(listed: readonly ListedCertificate[]): Set<string> {
  const newest = new Map<string, CertificateRecord>();
  const current = new Set<string>();
  for (const { record, status } of listed) {
    if (status !== "valid") continue;
    if (record.kind === "operator") {
      current.add(record.serial);
      continue;
    }
    const identity =
      record.kind === "node"
        ? `node:${record.nodeId}`
        : `${record.kind}:${record.uris[0] ?? record.commonName}`;
    const seen = newest.get(identity);
    if (seen === undefined || record.issuedAt > seen.issuedAt) newest.set(identity, record);
  }
  for (const record of newest.values()) current.add(record.serial);
  return current;
}

function certificateMessage(
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

function caMessages(ca: CertificateAuthority): CaInfo[] {
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

function rotationMessage(ca: CertificateAuthority): CaRotation {
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

function requestMessage(record: JoinRequestRecord): CertificateRequest {
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

/** Lifetime of a certificate that renews itself, and whether it is overdue (past 5/6 of its life). */
function overdue(record: CertificateRecord, now: number): boolean {
  const life = record.notAfter - record.notBefore;
  return now > record.notAfter - life / 6;
}

/** `corral.v1.CertificatesService`: the cluster CA, its inventory, and rotation. */
export function certificatesService(context: FaceContext): Partial<ServiceImpl<typeof CertificatesService>> {
  const { ca, registry, joinRequests, clock } = context;

  const nodeNames = async (): Promise<Map<string, string>> => {
    const { nodes } = await registry.list();
    return new Map(nodes.map((node) => [node.id, node.name]));
  };

  /** A valid certificate whose CA a rotation retired is untrusted. */
  const withTrust = (listed: ListedCertificate): ListedCertificate =>
    listed.status === "valid" && !ca.state.cas.some((c) => c.id === listed.record.caId)
      ? { ...listed, status: "untrusted" }
      : listed;

  const listAll = async () => {
    const now = clock.now();
    const listed = (await inventoryOf(ca).all(now)).map(withTrust);
    return { now, listed, current: currentSerials(listed) };
  };

  const describe = async (listed: ListedCertificate): Promise<CertificateInfo> => {
    const { current } = await listAll();
    const name =
      listed.record.nodeId === undefined
        ? undefined
        : await registry
            .get(listed.record.nodeId)
            .then((node) => node.name)
            .catch(() => undefined);
    return certificateMessage(listed, {
      current: current.has(listed.record.serial),
      ...(name === undefined ? {} : { nodeName: name }),
    });
  };

  const findOne = async (serial: string): Promise<ListedCertificate> => {
    const normalized = assertSerial(serial);
    const inventory = inventoryOf(ca);
    const record = await inventory.get(normalized);
    if (record === undefined) throw CorralError.notFound("certificate", normalized);
    const revocation = await inventory.revocation(normalized);
    const status =
      revocation !== undefined ? "revoked" : clock.now() >= record.notAfter ? "expired" : "valid";
    return withTrust({ record, ...(revocation === undefined ? {} : { revocation }), status });
  };

  return {
    async listCertificates(request) {
      if (request.kind !== CertificateKind.UNSPECIFIED && kindFromEnum[request.kind] === undefined) {
        throw CorralError.invalidArgument("kind", `${request.kind} is not a certificate kind`);
      }
      const kind = kindFromEnum[request.kind];
      const nodeId = request.node.trim() === "" ? undefined : (await registry.get(request.node.trim())).id;
      const { listed, current } = await listAll();
      const names = await nodeNames();
      const chosen = listed
        .filter((c) => kind === undefined || c.record.kind === kind)
        .filter((c) => nodeId === undefined || c.record.nodeId === nodeId)
        .filter((c) => request.includeExpired || c.status !== "expired")
        .filter((c) => !request.currentOnly || current.has(c.record.serial))
        .sort((x, y) => y.record.issuedAt - x.record.issuedAt);
      return {
        certificates: chosen.map((c) => {
          const name = c.record.nodeId === undefined ? undefined : names.get(c.record.nodeId);
          return certificateMessage(c, {
            current: current.has(c.record.serial),
            ...(name === undefined ? {} : { nodeName: name }),
          });
        }),
      };
    },

    async getCertificate(request) {
      return { certificate: await describe(await findOne(request.serial)) };
    },

    async renewCertificate(request, ctx) {
      if (request.node.trim() === "") throw CorralError.invalidArgument("node", "is empty; name a node");
      const node = await registry.get(request.node.trim());
      if (node.status === "left") {
        throw new CorralError("FAILED_PRECONDITION", `${node.name} has left the cluster`);
      }
      if (node.role === "controller") {
        throw new CorralError(
          "FAILED_PRECONDITION",
          `${node.name} is a controller: its certificates are issued again when the CA changes or they near their end`,
        );
      }
      const inventory = inventoryOf(ca);
      const requested = await inventory.requestRenewal(
        node.id,
        describePrincipal(principalOf(ctx)),
        clock.now(),
      );
      const answer = {
        nodeId: node.id,
        nodeName: node.name,
        requestedAt: timestampFromMs(requested.requestedAt),
      };
      if (!request.wait) return answer;
      const deadline = AbortSignal.any([
        ctx.signal,
        AbortSignal.timeout(parseDuration(defaults.certificates.renewWait)),
      ]);
      // Bounded by the deadline: the node renews on its next trust check.
      while (!deadline.aborted) {
        const listed = await inventory.all(clock.now());
        const fresh = listed
          .filter((c) => c.record.nodeId === node.id && c.record.issuedAt >= requested.requestedAt)
          .sort((x, y) => y.record.issuedAt - x.record.issuedAt)[0];
        if (fresh !== undefined) {
          return {
            ...answer,
            certificate: certificateMessage(fresh, { current: true, nodeName: node.name }),
          };
        }
        await sleep(250, undefined, { signal: deadline }).catch(() => undefined);
      }
      throw new CorralError(
        "DEADLINE_EXCEEDED",
        `${node.name} has not renewed yet (it checks every ${defaults.certificates.trustRefreshInterval} while connected); the request stands`,
      );
    },

    async revokeCertificate(request, ctx) {
      const serial = request.serial.trim();
      const nodeName = request.node.trim();
      if ((serial === "") === (nodeName === "")) {
        throw CorralError.invalidArgument("serial", "give either a serial or a node, not both or neither");
      }
      const by = describePrincipal(principalOf(ctx));
      const inventory = inventoryOf(ca);
      let targets: ListedCertificate[];
      if (serial !== "") {
        const found = await findOne(serial);
        if (found.record.kind === "server" || found.record.kind === "controller") {
          // Revocation is checked where callers are checked (the controllers' listeners); agents do not
          // check the controllers' own certificates against it, so revoking one would promise too much.
          throw new CorralError(
            "FAILED_PRECONDITION",
            `certificate ${found.record.serial} is a controller's own (${found.record.kind}); only node and operator certificates can be revoked — replace a controller's by rotating the CA (corral certs rotate)`,
          );
        }
        if (found.status === "revoked") {
          throw new CorralError(
            "FAILED_PRECONDITION",
            `certificate ${found.record.serial} is already revoked`,
          );
        }
        targets = [found];
      } else {
        const node = await registry.get(nodeName);
        targets = (await inventory.all(clock.now())).filter(
          (c) => c.record.nodeId === node.id && c.status === "valid",
        );
        if (targets.length === 0) {
          throw new CorralError("FAILED_PRECONDITION", `${node.name} has no valid certificate to revoke`);
        }
      }
      const now = clock.now();
      for (const target of targets) await inventory.revoke(target.record.serial, request.reason, by, now);
      return {
        revoked: await Promise.all(
          targets.map(async (target) => describe(await findOne(target.record.serial))),
        ),
      };
    },

    async validateCertificate(request) {
      const check = await checkCertificate(request.pem, ca, clock.now());
      const status = check.revocation
        ? CertificateStatus.REVOKED
        : check.expired
          ? CertificateStatus.EXPIRED
          : check.notYetValid
            ? CertificateStatus.NOT_YET_VALID
            : CertificateStatus.VALID;
      const listed: ListedCertificate = {
        record: check.record,
        ...(check.revocation === undefined ? {} : { revocation: check.revocation }),
        status: "valid",
      };
      const message = certificateMessage(listed, { current: false });
      message.status = status;
      if (!check.known) message.issuedAt = undefined;
      return {
        valid: check.valid,
        certificate: message,
        chainsToCa: check.chainsToCa,
        caFingerprint: check.record.caFingerprint,
        expired: check.expired,
        notYetValid: check.notYetValid,
        revoked: check.revocation !== undefined,
        known: check.known,
        problems: [...check.problems],
      };
    },

    async listCertificateRequests(request) {
      const records = await joinRequests.list({ includeDecided: request.includeDecided });
      return { requests: records.map(requestMessage) };
    },

    async approveCertificateRequest(request, ctx) {
      if (request.request.trim() === "") throw CorralError.invalidArgument("request", "is empty");
      const found = await joinRequests.find(request.request.trim());
      const decided = await joinRequests.answer(found.id, true, describePrincipal(principalOf(ctx)));
      return { request: requestMessage(decided) };
    },

    async rejectCertificateRequest(request, ctx) {
      if (request.request.trim() === "") throw CorralError.invalidArgument("request", "is empty");
      const found = await joinRequests.find(request.request.trim());
      const decided = await joinRequests.answer(
        found.id,
        false,
        describePrincipal(principalOf(ctx)),
        request.reason,
      );
      return { request: requestMessage(decided) };
    },

    async getStatistics() {
      const { now, listed, current } = await listAll();
      const { nodes } = await registry.list();
      const members = nodes.filter((n) => n.status !== "left");
      const memberIds = new Set(members.map((n) => n.id));
      const controllerNames = new Set(members.filter((n) => n.role === "controller").map((n) => n.name));
      // Renewed by their holders: worth a warning only when overdue and still held by a member. A
      // controller's client certificate is issued again on its next use, so it never needs a person.
      const watched = (record: CertificateRecord) =>
        record.kind === "node"
          ? record.nodeId !== undefined && memberIds.has(record.nodeId)
          : record.kind === "server" && controllerNames.has(record.commonName);
      const warnBefore = now + parseDuration(defaults.certificates.expiryWarning);
      const validByKind: Record<string, number> = {};
      const issuedByKind: Record<string, number> = {};
      let issued = 0;
      let expiring = 0;
      let revoked = 0;
      let expired = 0;
      const warnings: ExpiryWarning[] = [];
      for (const certificate of listed) {
        const { record, status } = certificate;
        if (record.issuedAt >= now - day) {
          issued++;
          issuedByKind[record.kind] = (issuedByKind[record.kind] ?? 0) + 1;
        }
        if (status === "revoked" && record.notAfter > now) revoked++;
        if (status === "expired") expired++;
        if (status !== "valid") continue;
        validByKind[record.kind] = (validByKind[record.kind] ?? 0) + 1;
        if (!current.has(record.serial)) continue;
        if (record.notAfter < warnBefore) expiring++;
        const manual = record.kind === "operator";
        if (
          (manual && record.notAfter < warnBefore) ||
          (!manual && watched(record) && overdue(record, now))
        ) {
          const left = formatLeft(record.notAfter - now);
          warnings.push(
            create(ExpiryWarningSchema, {
              serial: record.serial,
              kind: kindToEnum[record.kind],
              subject: record.subject,
              notAfter: timestampFromMs(record.notAfter),
              caFingerprint: record.caFingerprint,
              message: manual
                ? `${record.kind} certificate "${record.commonName}" (${record.serial}) expires in ${left}: issue new credentials`
                : `${record.kind} certificate "${record.commonName}" (${record.serial}) expires in ${left} and was not renewed`,
            }),
          );
        }
      }
      for (const authority of ca.trustedCertificates()) {
        const notAfter = authority.notAfter.getTime();
        if (notAfter >= warnBefore) continue;
        warnings.push(
          create(ExpiryWarningSchema, {
            subject: authority.subject,
            notAfter: timestampFromMs(notAfter),
            caFingerprint: certificateFingerprint(new Uint8Array(authority.rawData)),
            message: `the cluster CA "${authority.subject}" expires in ${formatLeft(notAfter - now)}: rotate it (corral certs rotate)`,
          }),
        );
      }
      return {
        total: listed.length,
        issuedLast24h: issued,
        expiringWithin30d: expiring,
        revoked,
        expired,
        validByKind,
        warnings,
        rotation: rotationMessage(ca),
        issuedLast24hByKind: issuedByKind,
      };
    },

    async getCa() {
      return {
        cas: caMessages(ca),
        trustBundlePem: ca.certificatePem,
        rotation: rotationMessage(ca),
        keyStorage: ca.keyStorage,
      };
    },

    async rotateCa(request, ctx) {
      let overlapMs = ca.defaultRotationOverlapMs;
      if (request.overlap !== undefined) {
        const ms = Number(request.overlap.seconds) * 1000 + Math.floor(request.overlap.nanos / 1e6);
        if (ms !== 0) overlapMs = ms;
      }
      if (!Number.isFinite(overlapMs) || overlapMs < 1_000 || overlapMs > 365 * day) {
        throw CorralError.invalidArgument("overlap", "must be from 1s to 365d");
      }
      await ca.rotate(overlapMs, describePrincipal(principalOf(ctx)));
      return { cas: caMessages(ca), rotation: rotationMessage(ca) };
    },

    async getTrustBundle(_request, ctx) {
      const principal = principalOf(ctx);
      let renewNow = false;
      let reason = "";
      if (principal.kind === "node") {
        const inventory = inventoryOf(ca);
        const [record, renewal] = await Promise.all([
          inventory.get(principal.serial),
          inventory.renewalRequest(principal.nodeId),
        ]);
        if (record === undefined ? ca.state.rotation !== undefined : record.caId !== ca.issuingId) {
          renewNow = true;
          reason = "the cluster's CA is being rotated: renew onto the new CA";
        } else if (renewal !== undefined && (record === undefined || renewal.requestedAt > record.issuedAt)) {
          renewNow = true;
          reason = `${renewal.by} asked this node to renew its certificate`;
        }
      }
      return {
        caCertificatesPem: ca.certificatePem,
        issuingCaFingerprint: ca.issuingFingerprint,
        renewNow,
        reason,
      };
    },
  };
}

function formatLeft(ms: number): string {
  if (ms <= 0) return "0s (expired)";
  if (ms >= 2 * day) return `${Math.floor(ms / day)}d`;
  if (ms >= 3_600_000) return `${Math.floor(ms / 3_600_000)}h`;
  if (ms >= 60_000) return `${Math.floor(ms / 60_000)}m`;
  return `${Math.floor(ms / 1000)}s`;
}
