import { CorralError } from "../base/errors.ts";
import type { JoinRequestRecord } from "../core/admission/join-request.ts";
import type { JoinRequestBook } from "../core/admission/join-requests.ts";
import type { TokenRegistry } from "../core/admission/tokens.ts";
import {
  emptyResources,
  type MetadataValue,
  type NodeRecord,
  type NodeService,
  type Resources,
} from "../core/nodes/node.ts";
import type { NodeRegistry } from "../core/nodes/node-registry.ts";
import { validateNodeId, validateNodeName } from "../core/nodes/node-validation.ts";
import type { CertificateAuthority, SignedCertificate } from "./certificate-authority.ts";
import { parseCsr } from "./certificate-authority.ts";
import { nodeIdentityUri } from "./principal.ts";
import { publicKeyFingerprint } from "./x509-setup.ts";

export interface JoinInput {
  nodeId: string;
  name: string;
  metadata: Record<string, MetadataValue>;
  /** host:port where the controller can reach the node's agent, or "" when it cannot. */
  address: string;
  csrPem: string;
  token: string;
  resources: Partial<Resources>;
  services: NodeService[];
  labels: Record<string, string>;
  version: string;
  /** Where the request came from, as the transport saw it. */
  sourceAddress: string;
}

export interface Admitted {
  node: NodeRecord;
  certificate: SignedCertificate;
}

export interface AdmissionOptions {
  registry: NodeRegistry;
  tokens: TokenRegistry;
  requests: JoinRequestBook;
  ca: CertificateAuthority;
  nodeCertificateLifetimeMs: number;
  requestTimeoutMs: number;
}

/**
 * How a stranger becomes a node: by token (at once) or by request (an operator decides), and then a
 * certificate for the key the stranger proved it holds. Everything a node is told comes from here.
 */
export class Admission {
  readonly #o: AdmissionOptions;

  constructor(options: AdmissionOptions) {
    this.#o = options;
  }

  /**
   * `approvedBy` is set when an operator registers the node themselves: it is admitted at once, as
   * with a token.
   */
  async join(input: JoinInput, signal: AbortSignal, approvedBy?: string): Promise<Admitted> {
    const name = validateNodeName(input.name, "name");
    if (input.nodeId !== "") validateNodeId(input.nodeId, "node_id");
    const csr = parseCsr(input.csrPem);
    const keyFingerprint = publicKeyFingerprint(csr.publicKey.rawData);
    if (input.nodeId !== "") await this.#assertNewMember(input.nodeId);
    if (approvedBy !== undefined) return this.#admit({ ...input, name });
    if (input.token !== "") {
      // Checked first, spent last: a join refused on the way (a name taken, a CSR whose signature does
      // not verify) costs no use. The spend is atomic, so of two joins racing for a token's last use
      // one is admitted and the other's node is taken out again.
      const token = input.token;
      await this.#o.tokens.check(token, "node");
      return this.#admit({ ...input, name }, () => this.#o.tokens.redeem(token, "node"));
    }
    const request = await this.#o.requests.submit(
      {
        nodeId: input.nodeId,
        name,
        metadata: input.metadata,
        address: input.address,
        sourceAddress: input.sourceAddress,
        keyFingerprint,
        csrPem: input.csrPem,
        resources: {
          cpuCores: 0,
          memoryMb: 0,
          gpus: [],
          maxLayers: 0,
          usedLayers: 0,
          disks: [],
          ...input.resources,
        },
        services: input.services,
        labels: input.labels,
        version: input.version,
      },
      this.#o.requestTimeoutMs,
    );
    const decided = await this.#awaitDecision(request, signal);
    if (decided.state === "rejected") {
      throw new CorralError(
        "UNAUTHENTICATED",
        `join request ${decided.id} was rejected by ${decided.decidedBy ?? "an operator"}${decided.reason ? `: ${decided.reason}` : ""}`,
      );
    }
    if (decided.state !== "accepted") {
      // Evicted to make room for another network's request (join-requests.ts), or expired meanwhile.
      throw new CorralError(
        decided.decidedBy === "controller" && decided.reason?.startsWith("evicted") === true
          ? "RESOURCE_EXHAUSTED"
          : "DEADLINE_EXCEEDED",
        `join request ${decided.id} ${decided.reason ? `was ${decided.reason}` : `ended ${decided.state}`}; try again later or use a token`,
      );
    }
    return this.#admit({ ...input, name });
  }

  /**
   * Join by request without waiting (Pi-Controller's RegisterNode): the caller's latest request for this
   * key, or a new one filed now. An accepted request admits the node with what the operator accepted
   * (not with whatever this call says), and only for the key that filed it: proof of possession is the
   * CSR's signature, checked here before anything about a request is told.
   */
  async joinWithoutWaiting(input: JoinInput): Promise<Admitted | { pending: JoinRequestRecord }> {
    const name = validateNodeName(input.name, "name");
    if (input.nodeId !== "") validateNodeId(input.nodeId, "node_id");
    const csr = parseCsr(input.csrPem);
    if (!(await csr.verify()))
      throw CorralError.invalidArgument("csr_pem", "the request's signature does not match its key");
    const keyFingerprint = publicKeyFingerprint(csr.publicKey.rawData);
    const mine = (await this.#o.requests.list({ includeDecided: true }))
      .filter((request) => request.keyFingerprint === keyFingerprint)
      .at(-1);
    if (mine?.state === "accepted") {
      if (mine.nodeId !== "") await this.#assertNewMember(mine.nodeId);
      return this.#admit({ ...mine, csrPem: input.csrPem, token: "", sourceAddress: input.sourceAddress });
    }
    if (mine?.state === "rejected") {
      throw new CorralError(
        "UNAUTHENTICATED",
        `join request ${mine.id} was rejected by ${mine.decidedBy ?? "an operator"}${mine.reason ? `: ${mine.reason}` : ""}; register with a new key or a join token`,
      );
    }
    if (input.nodeId !== "") await this.#assertNewMember(input.nodeId);
    const pending = await this.#o.requests.submit(
      {
        nodeId: input.nodeId,
        name,
        metadata: input.metadata,
        address: input.address,
        sourceAddress: input.sourceAddress,
        keyFingerprint,
        csrPem: input.csrPem,
        resources: { ...emptyResources(), ...input.resources },
        services: input.services,
        labels: input.labels,
        version: input.version,
      },
      this.#o.requestTimeoutMs,
    );
    return { pending };
  }

  /** A member swaps its certificate for a fresh one, for the same identity. */
  async renew(nodeId: string, csrPem: string): Promise<SignedCertificate> {
    const node = await this.#o.registry.get(nodeId);
    return this.#sign(node, csrPem);
  }

  async #awaitDecision(request: JoinRequestRecord, signal: AbortSignal): Promise<JoinRequestRecord> {
    const remaining = Math.max(0, request.expiresAt - Date.now());
    const timeout = AbortSignal.timeout(remaining);
    const waiting = AbortSignal.any([signal, timeout]);
    try {
      return await this.#o.requests.waitForDecision(request.id, waiting);
    } catch (error) {
      if (!waiting.aborted) throw error;
      // Whoever stopped waiting, the request must not be accepted later for a caller who is gone.
      const final = await this.#o.requests.expire(request.id).catch(() => this.#o.requests.get(request.id));
      if (final.state === "accepted" || final.state === "rejected") return final;
      if (timeout.aborted) {
        throw new CorralError(
          "DEADLINE_EXCEEDED",
          `no operator answered join request ${request.id} within ${Math.round((request.expiresAt - request.createdAt) / 1000)}s`,
        );
      }
      throw new CorralError("CANCELLED", "the joining node stopped waiting");
    }
  }

  async #assertNewMember(nodeId: string): Promise<void> {
    const existing = await this.#o.registry.get(nodeId).catch(() => undefined);
    if (existing !== undefined && existing.id === nodeId && existing.status !== "left") {
      throw new CorralError(
        "ALREADY_EXISTS",
        `node ${nodeId} (${existing.name}) is already a member; remove it first (corral nodes rm ${existing.name})`,
      );
    }
  }

  /** Registers the node and signs its certificate; `spend` (a token's use) runs last, undone with it. */
  async #admit(input: JoinInput & { name: string }, spend?: () => Promise<unknown>): Promise<Admitted> {
    const node = await this.#o.registry.register({
      ...(input.nodeId === "" ? {} : { id: input.nodeId }),
      name: input.name,
      role: "agent",
      ...(input.address === "" ? {} : { address: input.address }),
      metadata: input.metadata,
      services: input.services,
      resources: input.resources,
      labels: input.labels,
      version: input.version,
      status: "ready",
    });
    try {
      const certificate = await this.#sign(node, input.csrPem);
      await spend?.();
      return { node, certificate };
    } catch (error) {
      await this.#o.registry.remove(node.id).catch(() => undefined);
      throw error;
    }
  }

  #sign(node: NodeRecord, csrPem: string): Promise<SignedCertificate> {
    const isIp = /^[\d.]+$/.test(node.address) || node.address.includes(":");
    return this.#o.ca.signRequest(csrPem, {
      commonName: node.name,
      dnsNames: ["localhost", ...(node.address !== "" && !isIp ? [node.address] : [])],
      ipAddresses: ["127.0.0.1", "::1", ...(node.address !== "" && isIp ? [node.address] : [])],
      uris: [nodeIdentityUri(node.id)],
      validityMs: this.#o.nodeCertificateLifetimeMs,
      usage: "both",
    });
  }
}
