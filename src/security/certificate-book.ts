import type { Clock } from "../base/clock.ts";
import { CorralError } from "../base/errors.ts";
import type { CaState } from "./ca-state.ts";
import {
  assertSerial,
  type CertificateInventory,
  type CertificateRecord,
  type ListedCertificate,
  type RenewalRequest,
} from "./certificate-inventory.ts";
import type { x509 } from "./x509-setup.ts";

/** What the book reads of the CA: its inventory, which CAs are trusted, which one issues. */
export type BookCa = {
  readonly inventory: CertificateInventory | undefined;
  readonly state: CaState;
  readonly issuingId: string;
  trustedCertificates(): x509.X509Certificate[];
};

/** What the book needs to know of a node: the rules about renewing and revoking name it. */
export interface BookNode {
  readonly id: string;
  readonly name: string;
  readonly status: string;
  readonly role: string;
}

/** The inventory as listed at one moment, with which certificates are in use. */
export interface CertificateListing {
  readonly now: number;
  readonly listed: readonly ListedCertificate[];
  readonly current: ReadonlySet<string>;
}

/** A certificate worth a person's attention: near its end and not renewed, or a CA running out. */
export interface ExpiryNotice {
  readonly record?: CertificateRecord;
  readonly authority?: x509.X509Certificate;
  readonly message: string;
}

export interface CertificateStatistics {
  readonly total: number;
  readonly issuedLastDay: number;
  readonly issuedLastDayByKind: Record<string, number>;
  readonly expiringSoon: number;
  readonly revoked: number;
  readonly expired: number;
  readonly validByKind: Record<string, number>;
  readonly notices: readonly ExpiryNotice[];
}

const day = 86_400_000;

/**
 * Which certificates are in use: a node's, a listener's or a controller's newest valid one; every
 * valid operator one (an operator may hold several at once, each on another machine).
 */
export function currentSerials(listed: readonly ListedCertificate[]): Set<string> {
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

/** A valid certificate whose CA a rotation retired is untrusted: no member accepts it any more. */
export function withTrust(listed: ListedCertificate, state: CaState): ListedCertificate {
  return listed.status === "valid" && !state.cas.some((c) => c.id === listed.record.caId)
    ? { ...listed, status: "untrusted" }
    : listed;
}

/** A certificate that renews itself is overdue past 5/6 of its life (its holder renews well before). */
export function isOverdue(record: CertificateRecord, now: number): boolean {
  const life = record.notAfter - record.notBefore;
  return now > record.notAfter - life / 6;
}

export function formatLeft(ms: number): string {
  if (ms <= 0) return "0s (expired)";
  if (ms >= 2 * day) return `${Math.floor(ms / day)}d`;
  if (ms >= 3_600_000) return `${Math.floor(ms / 3_600_000)}h`;
  if (ms >= 60_000) return `${Math.floor(ms / 60_000)}m`;
  return `${Math.floor(ms / 1000)}s`;
}

/**
 * The cluster's certificates and the rules about them: which are current or untrusted, when a node
 * may be asked to renew, which may be revoked, and what deserves a warning. Faces translate its
 * answers; it holds no wire types.
 */
export class CertificateBook {
  readonly #ca: BookCa;
  readonly #clock: Clock;

  constructor(options: { readonly ca: BookCa; readonly clock: Clock }) {
    this.#ca = options.ca;
    this.#clock = options.clock;
  }

  get #inventory(): CertificateInventory {
    const inventory = this.#ca.inventory;
    if (inventory === undefined) {
      throw new CorralError("FAILED_PRECONDITION", "this controller's CA keeps no inventory");
    }
    return inventory;
  }

  async list(): Promise<CertificateListing> {
    const now = this.#clock.now();
    const listed = (await this.#inventory.all(now)).map((c) => withTrust(c, this.#ca.state));
    return { now, listed, current: currentSerials(listed) };
  }

  /** One certificate by serial (hex, any case, colons allowed); NOT_FOUND when none was issued. */
  async find(serial: string): Promise<ListedCertificate> {
    const normalized = assertSerial(serial);
    const inventory = this.#inventory;
    const record = await inventory.get(normalized);
    if (record === undefined) throw CorralError.notFound("certificate", normalized);
    const revocation = await inventory.revocation(normalized);
    const status =
      revocation !== undefined ? "revoked" : this.#clock.now() >= record.notAfter ? "expired" : "valid";
    return withTrust({ record, ...(revocation === undefined ? {} : { revocation }), status }, this.#ca.state);
  }

  /** Asks `node` to renew on its next trust check. Controllers and nodes that left cannot be asked. */
  async requestRenewal(node: BookNode, by: string): Promise<RenewalRequest> {
    if (node.status === "left") {
      throw new CorralError("FAILED_PRECONDITION", `${node.name} has left the cluster`);
    }
    if (node.role === "controller") {
      throw new CorralError(
        "FAILED_PRECONDITION",
        `${node.name} is a controller: its certificates are issued again when the CA changes or they near their end`,
      );
    }
    return this.#inventory.requestRenewal(node.id, by, this.#clock.now());
  }

  /** The newest certificate issued to `nodeId` at or after `since`, once the node has renewed. */
  async issuedSince(nodeId: string, since: number): Promise<ListedCertificate | undefined> {
    const listed = await this.#inventory.all(this.#clock.now());
    return listed
      .filter((c) => c.record.nodeId === nodeId && c.record.issuedAt >= since)
      .sort((x, y) => y.record.issuedAt - x.record.issuedAt)[0];
  }

  /**
   * What revoking one serial, or every valid certificate of a node, would revoke; refuses (and
   * changes nothing) when that is nothing or includes a controller's own certificate.
   */
  async revocationTargets(what: { serial: string } | { node: BookNode }): Promise<ListedCertificate[]> {
    if ("serial" in what) {
      const found = await this.find(what.serial);
      if (found.record.kind === "server" || found.record.kind === "controller") {
        // Revocation is checked where callers are checked (the controllers' listeners); agents do not
        // check the controllers' own certificates against it, so revoking one would promise too much.
        throw new CorralError(
          "FAILED_PRECONDITION",
          `certificate ${found.record.serial} is a controller's own (${found.record.kind}); only node and operator certificates can be revoked — replace a controller's by rotating the CA (corral certs rotate)`,
        );
      }
      if (found.status === "revoked") {
        throw new CorralError("FAILED_PRECONDITION", `certificate ${found.record.serial} is already revoked`);
      }
      return [found];
    }
    const { node } = what;
    const targets = (await this.#inventory.all(this.#clock.now())).filter(
      (c) => c.record.nodeId === node.id && c.status === "valid",
    );
    if (targets.length === 0) {
      throw new CorralError("FAILED_PRECONDITION", `${node.name} has no valid certificate to revoke`);
    }
    return targets;
  }

  /** Revokes `targets` (from `revocationTargets`) and answers them as they now stand. */
  async revoke(
    targets: readonly ListedCertificate[],
    reason: string,
    by: string,
  ): Promise<ListedCertificate[]> {
    const now = this.#clock.now();
    for (const target of targets) await this.#inventory.revoke(target.record.serial, reason, by, now);
    return Promise.all(targets.map((target) => this.find(target.record.serial)));
  }

  /**
   * Whether the node presenting certificate `serial` should renew now, and why: its certificate is
   * not from the issuing CA (a rotation is under way), or someone asked after it was issued.
   */
  async renewalAdvice(nodeId: string, serial: string): Promise<{ renewNow: boolean; reason: string }> {
    const inventory = this.#inventory;
    const [record, renewal] = await Promise.all([inventory.get(serial), inventory.renewalRequest(nodeId)]);
    if (record === undefined ? this.#ca.state.rotation !== undefined : record.caId !== this.#ca.issuingId) {
      return { renewNow: true, reason: "the cluster's CA is being rotated: renew onto the new CA" };
    }
    if (renewal !== undefined && (record === undefined || renewal.requestedAt > record.issuedAt)) {
      return { renewNow: true, reason: `${renewal.by} asked this node to renew its certificate` };
    }
    return { renewNow: false, reason: "" };
  }

  /**
   * Counts and warnings over `listing`. `members` are the nodes still in the cluster: a certificate
   * that renews itself is worth a warning only when overdue and still held by a member; a controller's
   * client certificate is issued again on its next use, so it never needs a person.
   */
  statistics(
    listing: CertificateListing,
    members: readonly BookNode[],
    warnWithinMs: number,
  ): CertificateStatistics {
    const { now, listed, current } = listing;
    const memberIds = new Set(members.map((n) => n.id));
    const controllerNames = new Set(members.filter((n) => n.role === "controller").map((n) => n.name));
    const watched = (record: CertificateRecord) =>
      record.kind === "node"
        ? record.nodeId !== undefined && memberIds.has(record.nodeId)
        : record.kind === "server" && controllerNames.has(record.commonName);
    const warnBefore = now + warnWithinMs;
    const validByKind: Record<string, number> = {};
    const issuedByKind: Record<string, number> = {};
    const notices: ExpiryNotice[] = [];
    let issued = 0;
    let expiring = 0;
    let revoked = 0;
    let expired = 0;
    for (const { record, status } of listed) {
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
        (!manual && watched(record) && isOverdue(record, now))
      ) {
        const left = formatLeft(record.notAfter - now);
        notices.push({
          record,
          message: manual
            ? `${record.kind} certificate "${record.commonName}" (${record.serial}) expires in ${left}: issue new credentials`
            : `${record.kind} certificate "${record.commonName}" (${record.serial}) expires in ${left} and was not renewed`,
        });
      }
    }
    for (const authority of this.#ca.trustedCertificates()) {
      const notAfter = authority.notAfter.getTime();
      if (notAfter >= warnBefore) continue;
      notices.push({
        authority,
        message: `the cluster CA "${authority.subject}" expires in ${formatLeft(notAfter - now)}: rotate it (corral certs rotate)`,
      });
    }
    return {
      total: listed.length,
      issuedLastDay: issued,
      issuedLastDayByKind: issuedByKind,
      expiringSoon: expiring,
      revoked,
      expired,
      validByKind,
      notices,
    };
  }
}
