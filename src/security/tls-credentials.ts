import { experimental, type ServerCredentials } from "@grpc/grpc-js";

type CertificateProvider = experimental.CertificateProvider;
type CaListener = experimental.CaCertificateUpdateListener;
type IdentityListener = experimental.IdentityCertificateUpdateListener;

/**
 * Certificates held in memory and replaceable while the server runs (a renewed certificate takes effect
 * for new connections without a restart).
 */
export class RotatingCertificates implements CertificateProvider {
  #ca: Buffer | undefined;
  #identity: { certificate: Buffer; privateKey: Buffer } | undefined;
  readonly #caListeners = new Set<CaListener>();
  readonly #identityListeners = new Set<IdentityListener>();

  /** Without certificates yet (a node before it joined), the listener refuses connections until `update`. */
  constructor(caPem?: string, certificatePem?: string, privateKeyPem?: string) {
    if (caPem !== undefined) this.#ca = Buffer.from(caPem);
    if (certificatePem !== undefined && privateKeyPem !== undefined) {
      this.#identity = { certificate: Buffer.from(certificatePem), privateKey: Buffer.from(privateKeyPem) };
    }
  }

  get ready(): boolean {
    return this.#ca !== undefined && this.#identity !== undefined;
  }

  rotate(certificatePem: string, privateKeyPem: string): void {
    this.#identity = { certificate: Buffer.from(certificatePem), privateKey: Buffer.from(privateKeyPem) };
    for (const listener of this.#identityListeners) listener(this.#identity);
  }

  update(caPem: string, certificatePem: string, privateKeyPem: string): void {
    this.#ca = Buffer.from(caPem);
    for (const listener of this.#caListeners) listener({ caCertificate: this.#ca });
    this.rotate(certificatePem, privateKeyPem);
  }

  // grpc-js registers its own watcher only after adding ours, so the first update must come later,
  // not from inside this call (its file-watching provider is asynchronous too).
  addCaCertificateListener(listener: CaListener): void {
    this.#caListeners.add(listener);
    queueMicrotask(() => {
      if (this.#caListeners.has(listener) && this.#ca !== undefined) listener({ caCertificate: this.#ca });
    });
  }
  removeCaCertificateListener(listener: CaListener): void {
    this.#caListeners.delete(listener);
  }
  addIdentityCertificateListener(listener: IdentityListener): void {
    this.#identityListeners.add(listener);
    queueMicrotask(() => {
      if (this.#identityListeners.has(listener) && this.#identity !== undefined) listener(this.#identity);
    });
  }
  removeIdentityCertificateListener(listener: IdentityListener): void {
    this.#identityListeners.delete(listener);
  }
}

/**
 * TLS that asks for a client certificate but lets callers without one through the handshake: they can
 * still reach the few methods the access table opens to everyone (joining). Certificates that do not
 * chain to the CA, or have expired, are not accepted as an identity.
 */
export function optionalClientCertificateCredentials(certificates: RotatingCertificates): ServerCredentials {
  return experimental.createCertificateProviderServerCredentials(certificates, certificates, false);
}

/** TLS that refuses any client without a valid certificate from the CA (the agent's listener). */
export function requiredClientCertificateCredentials(certificates: RotatingCertificates): ServerCredentials {
  return experimental.createCertificateProviderServerCredentials(certificates, certificates, true);
}
