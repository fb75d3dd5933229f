import type { PeerCertificate } from "node:tls";
import { CorralError } from "../base/errors.ts";
import type { TokenRegistry } from "../core/admission/tokens.ts";
import type { NodeRecord } from "../core/nodes/node.ts";
import type { NodeRegistry } from "../core/nodes/node-registry.ts";
import type { Store } from "../store/store.ts";
import type { CertificateAuthority } from "./certificate-authority.ts";
import { normalizeSerial, revokedPrefix } from "./certificate-inventory.ts";
import { type Principal, principalFromUri, urisFromSubjectAltName } from "./principal.ts";

/** What the certificate checks read: the controller's store, or an agent's watched copy of it. */
export interface PrincipalLookups {
  isRevoked(serial: string): Promise<boolean>;
  /** A member's record by id (undefined when there is none): nodes and controllers alike. */
  member(id: string): Promise<Pick<NodeRecord, "id" | "role" | "status"> | undefined>;
  /** Whether a CA trusted now issued it (absent: the TLS handshake's trust is enough). */
  trusts?(raw: Buffer): boolean;
}

/**
 * The one set of certificate checks, for the controller's listeners and every agent's: the identity
 * named in the certificate, not revoked, issued by a CA trusted now, and its node or controller still a
 * member. `certificate` has already been verified against the CA by the TLS handshake.
 */
export async function resolveCertificatePrincipal(
  certificate: PeerCertificate,
  lookups: PrincipalLookups,
): Promise<Principal> {
  const serial = normalizeSerial(certificate.serialNumber);
  const principal = urisFromSubjectAltName(certificate.subjectaltname)
    .map((uri) => principalFromUri(uri, serial))
    .find((p) => p !== undefined);
  if (principal === undefined) {
    throw new CorralError(
      "UNAUTHENTICATED",
      "the client certificate names no corral identity (corral://node/… or corral://operator/…)",
    );
  }
  if (await lookups.isRevoked(serial)) {
    throw new CorralError("UNAUTHENTICATED", `certificate ${serial} was revoked`);
  }
  if (lookups.trusts !== undefined && certificate.raw !== undefined && !lookups.trusts(certificate.raw)) {
    throw new CorralError(
      "UNAUTHENTICATED",
      `certificate ${serial} was issued by a CA this cluster no longer trusts (rotated out); renew it or join again`,
    );
  }
  if (principal.kind === "controller") {
    const controller = await lookups.member(principal.controllerId).catch(() => undefined);
    if (controller?.role !== "controller" || controller.status === "left") {
      throw new CorralError(
        "UNAUTHENTICATED",
        `controller ${principal.controllerId} is not a controller of this cluster`,
      );
    }
  }
  if (principal.kind === "node") {
    const node = await lookups.member(principal.nodeId);
    if (node === undefined || node.id !== principal.nodeId || node.status === "left") {
      throw new CorralError(
        "UNAUTHENTICATED",
        `node ${principal.nodeId} is no longer a member of this cluster; its certificate no longer works — join again`,
      );
    }
  }
  return principal;
}

/**
 * Turns what a caller presented into a principal, on every call: a certificate that chains to the CA is
 * necessary but not enough — its node must still be a member and its serial must not be revoked, so
 * removing a node or revoking a credential takes effect at once, not at the next handshake.
 */
export class PrincipalResolver {
  readonly #registry: NodeRegistry;
  readonly #tokens: TokenRegistry;
  readonly #store: Store;
  readonly #ca: CertificateAuthority | undefined;

  /** With `ca`, a certificate must also chain to a CA trusted now (a rotation's overlap can end mid-connection). */
  constructor(registry: NodeRegistry, tokens: TokenRegistry, store: Store, ca?: CertificateAuthority) {
    this.#registry = registry;
    this.#tokens = tokens;
    this.#store = store;
    this.#ca = ca;
  }

  /** `certificate` has already been verified against the CA by the TLS handshake. */
  fromCertificate(certificate: PeerCertificate): Promise<Principal> {
    return resolveCertificatePrincipal(certificate, {
      isRevoked: async (serial) => (await this.#store.get(revokedPrefix + serial)) !== undefined,
      member: (id) =>
        this.#registry.get(id).catch((error: unknown) => {
          if (error instanceof CorralError && error.code === "NOT_FOUND") return undefined;
          throw error;
        }),
      ...(this.#ca === undefined ? {} : { trusts: (raw: Buffer) => this.#ca?.trusts(raw) ?? false }),
    });
  }

  /** `authorization: Bearer <operator token>` (the dashboard and scripts). */
  async fromBearer(header: string): Promise<Principal> {
    const token = /^Bearer\s+(\S+)$/i.exec(header.trim())?.[1];
    if (token === undefined)
      throw new CorralError("UNAUTHENTICATED", "the authorization header must be `Bearer <token>`");
    const record = await this.#tokens.redeem(token, "operator-any");
    if (record.role === "node")
      throw new CorralError("PERMISSION_DENIED", "a join token cannot be used to call the API");
    return { kind: "operator", role: record.role, name: `token:${record.id}`, credential: record.id };
  }

  async revokeCertificate(serial: string, reason: string): Promise<void> {
    await this.#store.commit({
      ops: [
        {
          type: "put",
          key: revokedPrefix + normalizeSerial(serial),
          value: JSON.stringify({ reason, at: Date.now() }),
        },
      ],
    });
  }
}
