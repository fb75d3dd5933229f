import { setTimeout as sleep } from "node:timers/promises";
import { timestampFromMs } from "@bufbuild/protobuf/wkt";
import type { ServiceImpl } from "@connectrpc/connect";
import type { Clock } from "../../base/clock.ts";
import { parseDuration } from "../../base/duration.ts";
import { CorralError } from "../../base/errors.ts";
import type { JoinRequestBook } from "../../core/admission/join-requests.ts";
import type { NodeRegistry } from "../../core/nodes/node-registry.ts";
import { defaults } from "../../defaults.ts";
import {
  type CertificateInfo,
  CertificateKind,
  CertificateStatus,
  type CertificatesService,
} from "../../gen/corral/v1/certificates_pb.ts";
import { principalOf } from "../../rpc/principal-context.ts";
import type { CertificateAuthority } from "../../security/certificate-authority.ts";
import type { CertificateBook } from "../../security/certificate-book.ts";
import { checkCertificate } from "../../security/certificate-check.ts";
import type { ListedCertificate } from "../../security/certificate-inventory.ts";
import { describePrincipal } from "../../security/principal.ts";
import {
  caMessages,
  certificateMessage,
  kindFromEnum,
  requestMessage,
  rotationMessage,
  warningMessage,
} from "./certificate-messages.ts";

const day = 86_400_000;

/** What the certificates face touches: the book's rules, the CA (rotation, trust bundle), the nodes' names. */
export interface CertificatesServiceDeps {
  readonly certificates: CertificateBook;
  readonly ca: CertificateAuthority;
  readonly registry: NodeRegistry;
  readonly joinRequests: JoinRequestBook;
  readonly clock: Clock;
}

/** `corral.v1.CertificatesService`: the cluster CA, its inventory, and rotation. */
export function certificatesService({
  certificates,
  ca,
  registry,
  joinRequests,
  clock,
}: CertificatesServiceDeps): Partial<ServiceImpl<typeof CertificatesService>> {
  const nodeNames = async (): Promise<Map<string, string>> => {
    const { nodes } = await registry.list();
    return new Map(nodes.map((node) => [node.id, node.name]));
  };

  const describe = async (listed: ListedCertificate): Promise<CertificateInfo> => {
    const { current } = await certificates.list();
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

  return {
    async listCertificates(request) {
      if (request.kind !== CertificateKind.UNSPECIFIED && kindFromEnum[request.kind] === undefined) {
        throw CorralError.invalidArgument("kind", `${request.kind} is not a certificate kind`);
      }
      const kind = kindFromEnum[request.kind];
      const nodeId = request.node.trim() === "" ? undefined : (await registry.get(request.node.trim())).id;
      const { listed, current } = await certificates.list();
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
      return { certificate: await describe(await certificates.find(request.serial)) };
    },

    async renewCertificate(request, ctx) {
      if (request.node.trim() === "") throw CorralError.invalidArgument("node", "is empty; name a node");
      const node = await registry.get(request.node.trim());
      const requested = await certificates.requestRenewal(node, describePrincipal(principalOf(ctx)));
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
        const fresh = await certificates.issuedSince(node.id, requested.requestedAt);
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
      const targets = await certificates.revocationTargets(
        serial !== "" ? { serial } : { node: await registry.get(nodeName) },
      );
      const revoked = await certificates.revoke(targets, request.reason, describePrincipal(principalOf(ctx)));
      return { revoked: await Promise.all(revoked.map(describe)) };
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
      const listing = await certificates.list();
      const { nodes } = await registry.list();
      const members = nodes.filter((n) => n.status !== "left");
      const stats = certificates.statistics(
        listing,
        members,
        parseDuration(defaults.certificates.expiryWarning),
      );
      return {
        total: stats.total,
        issuedLast24h: stats.issuedLastDay,
        expiringWithin30d: stats.expiringSoon,
        revoked: stats.revoked,
        expired: stats.expired,
        validByKind: stats.validByKind,
        warnings: stats.notices.map(warningMessage),
        rotation: rotationMessage(ca),
        issuedLast24hByKind: stats.issuedLastDayByKind,
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
      const advice =
        principal.kind === "node"
          ? await certificates.renewalAdvice(principal.nodeId, principal.serial)
          : { renewNow: false, reason: "" };
      return {
        caCertificatesPem: ca.certificatePem,
        issuingCaFingerprint: ca.issuingFingerprint,
        ...advice,
      };
    },
  };
}
