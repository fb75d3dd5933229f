import type { DescService } from "@bufbuild/protobuf";
import { type Client, createClient } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import { formatHostPort } from "../base/address.ts";
import { CorralError } from "../base/errors.ts";
import type { NodeRecord } from "../core/nodes/node.ts";
import type { NodeRegistry } from "../core/nodes/node-registry.ts";
import type { CertificateAuthority, IssuedCertificate } from "../security/certificate-authority.ts";
import { controllerIdentityUri } from "../security/principal.ts";

const controllerCertificateLifetimeMs = 7 * 86_400_000;

/**
 * The controller calling agents (Pi-Controller's direction: the control plane issues commands to node
 * agents) over mTLS, with a client certificate that names it a controller of this cluster.
 */
export class AgentDialer {
  readonly #registry: NodeRegistry;
  readonly #ca: CertificateAuthority;
  readonly #controllerId: string;
  #identity: Promise<IssuedCertificate> | undefined;
  readonly #transports = new Map<string, ReturnType<typeof createGrpcTransport>>();

  constructor(registry: NodeRegistry, ca: CertificateAuthority, controllerId: string) {
    this.#registry = registry;
    this.#ca = ca;
    this.#controllerId = controllerId;
  }

  /** The node, checked to be a member that can be dialed. */
  async resolve(nodeIdOrName: string): Promise<NodeRecord> {
    const node = await this.#registry.get(nodeIdOrName);
    if (node.status === "left")
      throw new CorralError("FAILED_PRECONDITION", `node ${node.name} has left the cluster`);
    if (node.address === "" || node.port === 0) {
      throw new CorralError(
        "FAILED_PRECONDITION",
        `node ${node.name} has no address the controller can dial`,
      );
    }
    if (node.status === "down") throw new CorralError("UNAVAILABLE", `node ${node.name} is down`);
    return node;
  }

  /** A client of a service on the node's agent. */
  async client<S extends DescService>(service: S, node: NodeRecord): Promise<Client<S>> {
    return this.clientAt(service, formatHostPort({ host: node.address, port: node.port }));
  }

  /** A client of a service at `address` (host:port): another controller's cluster listener. */
  async clientAt<S extends DescService>(service: S, address: string): Promise<Client<S>> {
    const identity = await this.#currentIdentity();
    // Trust is fixed when a transport is made: a CA rotation needs new transports.
    const key = `${address}|${identity.serialNumber}|${this.#ca.bundleId}`;
    let transport = this.#transports.get(key);
    if (transport === undefined) {
      transport = createGrpcTransport({
        baseUrl: `https://${address}`,
        nodeOptions: {
          ca: this.#ca.certificatePem,
          cert: identity.certificatePem,
          key: identity.privateKeyPem,
        },
        defaultTimeoutMs: 30_000,
      });
      this.#transports.set(key, transport);
    }
    return createClient(service, transport);
  }

  /** Issued on first use and again when it nears its end, kept in memory only. */
  async #currentIdentity(): Promise<IssuedCertificate> {
    const current = this.#identity === undefined ? undefined : await this.#identity;
    if (
      current !== undefined &&
      current.caFingerprint === this.#ca.fingerprint &&
      current.notAfter.getTime() - Date.now() > controllerCertificateLifetimeMs / 3
    ) {
      return current;
    }
    this.#transports.clear();
    this.#identity = this.#ca.issue({
      commonName: `controller ${this.#controllerId}`,
      dnsNames: [],
      ipAddresses: [],
      uris: [controllerIdentityUri(this.#controllerId)],
      validityMs: controllerCertificateLifetimeMs,
      usage: "client",
    });
    return this.#identity;
  }
}
