import { createHash, webcrypto, X509Certificate } from "node:crypto";
import { mkdir, rename, rm, writeFile } from "node:fs/promises";
import { dirname, join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import type { Logger } from "pino";
import { type Clock, systemClock } from "../base/clock.ts";
import { CorralError } from "../base/errors.ts";
import type { Store } from "../store/store.ts";
import { type SealingKey, seal, unseal } from "./ca-key-file.ts";
import { CaSigner, type ServerCertificateRequest } from "./ca-signer.ts";
import {
  type CaRecord,
  type CaState,
  caStateKey,
  effectiveState,
  initialState,
  parseCaState,
  rotatedState,
} from "./ca-state.ts";
import { CertificateInventory, recordOf } from "./certificate-inventory.ts";
import { privateKeyToPem, readIfExists, writeSecretFile } from "./pem.ts";
import { principalFromUri } from "./principal.ts";
import { generateKeyPair, publicKeyFingerprint, type X509Key, x509 } from "./x509-setup.ts";

export type { ServerCertificateRequest } from "./ca-signer.ts";

export interface IssuedCertificate {
  readonly certificatePem: string;
  readonly privateKeyPem: string;
  readonly notAfter: Date;
  readonly serialNumber: string;
  /** The CA that signed it. */
  readonly caFingerprint: string;
}

export interface SignedCertificate {
  readonly certificatePem: string;
  readonly notAfter: Date;
  readonly serialNumber: string;
  readonly keyFingerprint: string;
  readonly caFingerprint: string;
}

export interface CertificateAuthorityOptions {
  /** State, inventory and revocations; one store shared by every controller of the cluster. */
  readonly store: Store;
  /** `<data dir>/ca`: key files (unless sealed) and `ca.crt`, the trust bundle for local tools. */
  readonly dir: string;
  readonly clusterName: string;
  /** Seals new CA keys into the store; without it they are files in `dir` (one controller, SQLite). */
  readonly sealingKey?: SealingKey;
  readonly clock?: Clock;
  readonly logger?: Logger;
  /** The leader writes the end of a rotation's overlap and prunes the inventory. */
  readonly isLeader?: () => boolean;
  /** A rotation's overlap when the caller names none (`ca.rotationOverlap`). */
  readonly rotationOverlapMs?: number;
}

/** What changed, for listeners that hold certificates signed by the CA. */
export interface CaChange {
  readonly presentingChanged: boolean;
  readonly issuingChanged: boolean;
  readonly bundleChanged: boolean;
}

const legacyKeyFile = "ca.key";
const bundleFile = "ca.crt";
const maxTrustCache = 10_000;

/**
 * The cluster's certificate authority, as every controller sees it: ECDSA P-256, created once per
 * cluster (the first controller to start writes it to the store; the others load it), and rotated with
 * an overlap in which the old and the new CA are both trusted (see CaState). Every certificate it signs
 * is recorded in the inventory.
 *
 * `certificatePem` is the trust bundle (the presenting CA first); `fingerprint` is the presenting CA's,
 * the root of the listeners' chains, which joining nodes pin.
 */
export class CertificateAuthority {
  readonly inventory: CertificateInventory | undefined;
  readonly #o: Partial<CertificateAuthorityOptions> & { dir: string; clusterName: string };
  readonly #clock: Clock;
  #stored: { state: CaState; modRevision: number } | undefined;
  #state: CaState;
  #signers = new Map<string, CaSigner>();
  #bundle = "";
  #bundleId = "";
  readonly #listeners = new Set<(change: CaChange) => void>();
  readonly #trustCache = new Map<string, boolean>();
  #stop = new AbortController();
  #watching: Promise<void> | undefined;
  #overlapTimer: NodeJS.Timeout | undefined;
  #pruning: NodeJS.Timeout | undefined;

  private constructor(
    options: Partial<CertificateAuthorityOptions> & { dir: string; clusterName: string },
    state: CaState,
    signers: Map<string, CaSigner>,
  ) {
    this.#o = options;
    this.#clock = options.clock ?? systemClock;
    this.inventory = options.store === undefined ? undefined : new CertificateInventory(options.store);
    this.#state = state;
    this.#signers = signers;
    this.#recomputeBundle();
  }

  /**
   * A CA of its own in `dir` (ca.crt, ca.key), created on first use, with no store: for tools and tests
   * that need a CA outside a cluster.
   */
  static async loadOrCreate(dir: string, clusterName: string): Promise<CertificateAuthority> {
    const { signer, record } = await loadOrCreateFiles(dir, clusterName);
    return new CertificateAuthority(
      { dir, clusterName },
      initialState(record),
      new Map([[signer.id, signer]]),
    );
  }

  /** The cluster's CA from the store, created there by the first controller (create-if-absent). */
  static async open(options: CertificateAuthorityOptions): Promise<CertificateAuthority> {
    const store = options.store;
    let found = await store.get(caStateKey);
    if (found === undefined) {
      const created = options.sealingKey
        ? await createSealed(options.sealingKey, options.clusterName)
        : await loadOrCreateFiles(options.dir, options.clusterName);
      const state = initialState(created.record);
      const result = await store.commit({
        compares: [{ key: caStateKey, modRevision: 0 }],
        ops: [{ type: "put", key: caStateKey, value: JSON.stringify(state) }],
      });
      found = await store.get(caStateKey);
      if (!result.succeeded)
        options.logger?.info("another controller created the cluster's CA first; using it");
    }
    if (found === undefined) throw new CorralError("UNAVAILABLE", "the CA state vanished from the store");
    const stored = { state: parseCaState(found.value), modRevision: found.modRevision };
    const clock = options.clock ?? systemClock;
    const state = effectiveState(stored.state, clock.now());
    const signers = await loadSigners(state, options, new Map());
    const ca = new CertificateAuthority(options, state, signers);
    ca.#stored = stored;
    await ca.#writeBundleFile();
    ca.#scheduleOverlapEnd();
    return ca;
  }

  /** The certificates every member must trust, the presenting CA first. */
  get certificatePem(): string {
    return this.#bundle;
  }

  /** Changes whenever the set of trusted CAs changes. */
  get bundleId(): string {
    return this.#bundleId;
  }

  /** The presenting CA: the root of the controllers' own certificate chains; what joining nodes pin. */
  get fingerprint(): string {
    return this.#presenting.fingerprint;
  }

  get presentingCertificatePem(): string {
    return this.#presenting.certificatePem;
  }

  /** The CA that signs node and operator certificates (the new one during a rotation). */
  get issuingFingerprint(): string {
    return this.#issuing.fingerprint;
  }

  get issuingId(): string {
    return this.#issuing.id;
  }

  get defaultRotationOverlapMs(): number {
    return this.#o.rotationOverlapMs ?? 48 * 3_600_000;
  }

  /** Where new CA keys are kept, in words. */
  get keyStorage(): string {
    return this.#o.sealingKey === undefined
      ? `files in ${this.#o.dir} (mode 0600)`
      : `sealed in the store with AES-256-GCM (ca.keyFile ${this.#o.sealingKey.path}, key ${this.#o.sealingKey.id})`;
  }

  /** The state as it holds now (a rotation past its overlap counts as complete). */
  get state(): CaState {
    return this.#state;
  }

  /** Every trusted CA's certificate, the presenting CA first. */
  trustedCertificates(): x509.X509Certificate[] {
    return this.#orderedIds().flatMap((id) => {
      const signer = this.#signers.get(id);
      return signer === undefined ? [] : [signer.certificate];
    });
  }

  get #presenting(): CaSigner {
    return this.#signer(this.#state.presenting);
  }

  get #issuing(): CaSigner {
    return this.#signer(this.#state.issuing);
  }

  #signer(id: string): CaSigner {
    const signer = this.#signers.get(id);
    if (signer === undefined) throw new CorralError("INTERNAL", `CA ${id} is not loaded`);
    return signer;
  }

  #orderedIds(): string[] {
    const ids = this.#state.cas.map((ca) => ca.id);
    return [this.#state.presenting, ...ids.filter((id) => id !== this.#state.presenting)];
  }

  /** Called after every change of the CA (rotation started, overlap ended), on this controller. */
  onChange(listener: (change: CaChange) => void): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  /**
   * Issues a key pair and a certificate signed by this CA. `by: "issuing"` asks for the issuing CA
   * whatever the kind: a listener prepares the certificate it will present once a rotation's overlap ends.
   */
  async issue(request: ServerCertificateRequest, by?: "issuing"): Promise<IssuedCertificate> {
    const keys = await generateKeyPair();
    const { certificate, signer } = await this.#sign(keys.publicKey as unknown as X509Key, request, by);
    return {
      certificatePem: certificate.toString("pem"),
      privateKeyPem: await privateKeyToPem(webcrypto.subtle, keys.privateKey),
      notAfter: certificate.notAfter,
      serialNumber: certificate.serialNumber,
      caFingerprint: signer.fingerprint,
    };
  }

  /**
   * Signs the key in a PKCS#10 request: the requester proves it holds the key (the CSR's signature),
   * and the CA decides everything else (names, lifetime, purpose) — nothing in the CSR but the key is used.
   */
  async signRequest(csrPem: string, request: ServerCertificateRequest): Promise<SignedCertificate> {
    const csr = parseCsr(csrPem);
    if (!(await csr.verify())) {
      throw CorralError.invalidArgument("csr_pem", "the request's signature does not match its key");
    }
    const algorithm = csr.publicKey.algorithm as { name?: string; namedCurve?: string };
    if (algorithm.name !== "ECDSA" || algorithm.namedCurve !== "P-256") {
      throw CorralError.invalidArgument("csr_pem", "the key must be ECDSA P-256");
    }
    const { certificate, signer } = await this.#sign(csr.publicKey as unknown as X509Key, request);
    return {
      certificatePem: certificate.toString("pem"),
      notAfter: certificate.notAfter,
      serialNumber: certificate.serialNumber,
      keyFingerprint: publicKeyFingerprint(csr.publicKey.rawData),
      caFingerprint: signer.fingerprint,
    };
  }

  async #sign(
    publicKey: X509Key,
    request: ServerCertificateRequest,
    by?: "issuing",
  ): Promise<{ certificate: x509.X509Certificate; signer: CaSigner }> {
    // Members move onto the issuing CA as they renew; what controllers present must chain to the CA
    // that every member already trusts, until the overlap ends.
    const kind = (request.uris ?? [])
      .map((uri) => principalFromUri(uri, "")?.kind)
      .find((k) => k !== undefined);
    const signer =
      kind === "node" || kind === "operator" || by === "issuing" ? this.#issuing : this.#presenting;
    const certificate = await signer.sign(publicKey, request);
    await this.inventory?.record(recordOf(certificate, signer, this.#clock.now()));
    return { certificate, signer };
  }

  /**
   * Whether a certificate (DER) was signed by a CA trusted now: the TLS handshake checked it against
   * the bundle of that moment, and a connection can outlive the end of a rotation's overlap.
   */
  trusts(der: Uint8Array): boolean {
    const key = `${this.#bundleId}|${createHash("sha256").update(der).digest("hex")}`;
    const cached = this.#trustCache.get(key);
    if (cached !== undefined) return cached;
    let trusted = false;
    try {
      const certificate = new X509Certificate(der);
      trusted = this.trustedCertificates().some((ca) => {
        const issuer = new X509Certificate(Buffer.from(ca.rawData));
        return certificate.checkIssued(issuer) && certificate.verify(issuer.publicKey);
      });
    } catch {
      trusted = false;
    }
    if (this.#trustCache.size >= maxTrustCache) this.#trustCache.clear();
    this.#trustCache.set(key, trusted);
    return trusted;
  }

  /**
   * Starts a rotation: a new CA, trusted beside the old one for `overlapMs`. Node and operator
   * certificates are signed by the new CA from now on; members fetch the new trust bundle and renew
   * (GetTrustBundle tells them to); when the overlap ends, the old CA is no longer trusted.
   */
  async rotate(overlapMs: number, by: string): Promise<CaState> {
    const store = this.#requireStore();
    const current = await store.get(caStateKey);
    if (current === undefined) throw new CorralError("FAILED_PRECONDITION", "the cluster has no CA yet");
    const now = this.#clock.now();
    const state = effectiveState(parseCaState(current.value), now);
    if (state.rotation !== undefined) {
      throw new CorralError(
        "FAILED_PRECONDITION",
        `a CA rotation is already under way; its overlap ends at ${new Date(state.rotation.overlapEndsAt).toISOString()}`,
      );
    }
    const created = this.#o.sealingKey
      ? await createSealed(this.#o.sealingKey, this.#o.clusterName, now)
      : await createKeyFile(this.#o.dir, this.#o.clusterName, now);
    const next = rotatedState(state, created.record, now, overlapMs, by);
    const result = await store.commit({
      compares: [{ key: caStateKey, modRevision: current.modRevision }],
      ops: [{ type: "put", key: caStateKey, value: JSON.stringify(next) }],
    });
    if (!result.succeeded) {
      throw new CorralError("ABORTED", "the CA changed on another controller at the same time; try again");
    }
    this.#signers.set(created.signer.id, created.signer);
    await this.#apply({ state: next, modRevision: result.revision });
    return this.#state;
  }

  #requireStore(): Store {
    if (this.#o.store === undefined) {
      throw new CorralError("FAILED_PRECONDITION", "this CA is not kept in a cluster store");
    }
    return this.#o.store;
  }

  /**
   * Follows the CA state in the store, so a rotation started on another controller applies here too;
   * on the leader, forgets certificates expired longer than `pruneExpiredAfterMs` (hourly).
   */
  start(options: { pruneExpiredAfterMs?: number } = {}): void {
    const store = this.#o.store;
    if (store === undefined || this.#watching !== undefined) return;
    const signal = this.#stop.signal;
    const keepMs = options.pruneExpiredAfterMs;
    if (keepMs !== undefined) {
      this.#pruning = setInterval(() => {
        if (this.#o.isLeader?.() !== true) return;
        this.inventory
          ?.prune(this.#clock.now(), keepMs)
          .catch((error: unknown) =>
            this.#o.logger?.warn({ err: error }, "pruning the certificate inventory failed"),
          );
      }, 3_600_000);
      this.#pruning.unref();
    }
    this.#watching = (async () => {
      while (!signal.aborted) {
        try {
          const from = (await store.revision()) + 1;
          await this.refresh();
          for await (const _batch of store.watch(from, { prefix: caStateKey, signal })) {
            await this.refresh();
          }
        } catch (error) {
          if (signal.aborted) return;
          this.#o.logger?.warn({ err: error }, "following the CA state failed; trying again");
          await sleep(1_000, undefined, { signal }).catch(() => undefined);
        }
      }
    })();
  }

  /** Reads the CA state from the store again and applies it. */
  async refresh(): Promise<void> {
    const store = this.#o.store;
    if (store === undefined) return;
    const found = await store.get(caStateKey);
    if (found === undefined) return;
    if (this.#stored !== undefined && found.modRevision === this.#stored.modRevision) {
      await this.#apply(this.#stored);
      return;
    }
    await this.#apply({ state: parseCaState(found.value), modRevision: found.modRevision });
  }

  async #apply(stored: { state: CaState; modRevision: number }): Promise<void> {
    this.#stored = stored;
    const before = {
      presenting: this.#state.presenting,
      issuing: this.#state.issuing,
      bundle: this.#bundleId,
    };
    const state = effectiveState(stored.state, this.#clock.now());
    this.#signers = await loadSigners(state, this.#o, this.#signers);
    this.#state = state;
    this.#recomputeBundle();
    this.#scheduleOverlapEnd();
    const change: CaChange = {
      presentingChanged: before.presenting !== state.presenting,
      issuingChanged: before.issuing !== state.issuing,
      bundleChanged: before.bundle !== this.#bundleId,
    };
    // Listeners hear of it before anything else can be awaited: a listener must present the new CA's
    // certificate before a member can fetch the bundle without the old one.
    if (change.presentingChanged || change.issuingChanged || change.bundleChanged) {
      this.#o.logger?.info(
        { presenting: this.fingerprint, issuing: this.issuingFingerprint, trusted: state.cas.length },
        "the cluster's CA changed",
      );
      for (const listener of this.#listeners) {
        try {
          listener(change);
        } catch (error) {
          this.#o.logger?.warn({ err: error }, "a CA change listener failed");
        }
      }
    }
    if (change.bundleChanged) await this.#writeBundleFile();
    if (state !== stored.state && this.#o.isLeader?.() === true) await this.#completeRotation(stored);
  }

  /** Writes down the end of an overlap, so the old CA record and its key leave the store. */
  async #completeRotation(stored: { state: CaState; modRevision: number }): Promise<void> {
    const store = this.#o.store;
    const rotation = stored.state.rotation;
    if (store === undefined || rotation === undefined) return;
    const done = effectiveState(stored.state, this.#clock.now());
    const result = await store.commit({
      compares: [{ key: caStateKey, modRevision: stored.modRevision }],
      ops: [{ type: "put", key: caStateKey, value: JSON.stringify(done) }],
    });
    if (!result.succeeded) return;
    this.#stored = { state: done, modRevision: result.revision };
    const old = stored.state.cas.find((ca) => ca.id === rotation.previous);
    // A retired CA's key signs nothing any more: it is not kept.
    if (old !== undefined && "file" in old.key) await rm(join(this.#o.dir, old.key.file), { force: true });
  }

  #scheduleOverlapEnd(): void {
    if (this.#overlapTimer !== undefined) clearTimeout(this.#overlapTimer);
    this.#overlapTimer = undefined;
    const rotation = this.#stored?.state.rotation;
    if (rotation === undefined || this.#o.store === undefined || this.#stop.signal.aborted) return;
    const delay = Math.max(0, rotation.overlapEndsAt - this.#clock.now()) + 10;
    this.#overlapTimer = setTimeout(
      () => {
        this.refresh().catch((error: unknown) =>
          this.#o.logger?.warn({ err: error }, "could not apply the end of the CA overlap"),
        );
      },
      Math.min(delay, 2 ** 31 - 1),
    );
    this.#overlapTimer.unref();
  }

  #recomputeBundle(): void {
    const ids = this.#orderedIds();
    this.#bundle = ids.map((id) => `${this.#signer(id).certificatePem.trimEnd()}\n`).join("");
    this.#bundleId = createHash("sha256").update(ids.join(",")).digest("hex").slice(0, 16);
    this.#trustCache.clear();
  }

  /** `<dir>/ca.crt`: the trust bundle, for the CLI's `--ca` and for people. */
  async #writeBundleFile(): Promise<void> {
    if (this.#o.store === undefined) return;
    const path = join(this.#o.dir, bundleFile);
    if ((await readIfExists(path)) === this.#bundle) return;
    await writeFileAtomic(path, this.#bundle);
  }

  async close(): Promise<void> {
    this.#stop.abort();
    if (this.#overlapTimer !== undefined) clearTimeout(this.#overlapTimer);
    if (this.#pruning !== undefined) clearInterval(this.#pruning);
    await this.#watching;
  }
}

async function writeFileAtomic(path: string, contents: string): Promise<void> {
  await mkdir(dirname(path), { recursive: true, mode: 0o700 });
  const temporary = `${path}.${process.pid}.tmp`;
  await writeFile(temporary, contents, { mode: 0o644 });
  await rename(temporary, path);
}

async function createSealed(
  key: SealingKey,
  clusterName: string,
  now = Date.now(),
): Promise<{ signer: CaSigner; record: CaRecord }> {
  const { signer, keyPem } = await CaSigner.create(clusterName, now);
  return {
    signer,
    record: {
      id: signer.id,
      fingerprint: signer.fingerprint,
      certificatePem: signer.certificatePem,
      key: { sealed: seal(key, keyPem, signer.fingerprint) },
      createdAt: now,
    },
  };
}

/** A rotated CA's key in `keys/<id>.key`, written before the record that names it. */
async function createKeyFile(
  dir: string,
  clusterName: string,
  now: number,
): Promise<{ signer: CaSigner; record: CaRecord }> {
  const { signer, keyPem } = await CaSigner.create(clusterName, now);
  const file = join("keys", `${signer.id}.key`);
  await writeSecretFile(join(dir, file), keyPem);
  return {
    signer,
    record: {
      id: signer.id,
      fingerprint: signer.fingerprint,
      certificatePem: signer.certificatePem,
      key: { file },
      createdAt: now,
    },
  };
}

/** Today's layout, one controller: `ca.crt` and `ca.key` (mode 0600) in `dir`, created on first use. */
async function loadOrCreateFiles(
  dir: string,
  clusterName: string,
): Promise<{ signer: CaSigner; record: CaRecord }> {
  const certPath = join(dir, bundleFile);
  const keyPath = join(dir, legacyKeyFile);
  const [certPem, keyPem] = await Promise.all([readIfExists(certPath), readIfExists(keyPath)]);
  let signer: CaSigner;
  if (certPem !== undefined && keyPem !== undefined) {
    signer = await CaSigner.fromPem(firstCertificate(certPem), keyPem, dir);
  } else if (certPem !== undefined || keyPem !== undefined) {
    throw new CorralError(
      "FAILED_PRECONDITION",
      `${dir} holds only one of ca.crt and ca.key; restore the missing file or move both away to create a new CA`,
    );
  } else {
    const created = await CaSigner.create(clusterName);
    signer = created.signer;
    await writeSecretFile(keyPath, created.keyPem);
    await writeFile(certPath, signer.certificatePem, { mode: 0o644 });
  }
  return {
    signer,
    record: {
      id: signer.id,
      fingerprint: signer.fingerprint,
      certificatePem: signer.certificatePem,
      key: { file: legacyKeyFile },
      createdAt: signer.certificate.notBefore.getTime(),
    },
  };
}

function firstCertificate(pem: string): string {
  const match = /-----BEGIN CERTIFICATE-----[\s\S]*?-----END CERTIFICATE-----/.exec(pem);
  return match === null ? pem : `${match[0]}\n`;
}

async function loadSigners(
  state: CaState,
  options: { dir: string; sealingKey?: SealingKey },
  known: Map<string, CaSigner>,
): Promise<Map<string, CaSigner>> {
  const signers = new Map<string, CaSigner>();
  for (const record of state.cas) {
    const loaded = known.get(record.id);
    if (loaded !== undefined) {
      signers.set(record.id, loaded);
      continue;
    }
    let keyPem: string | undefined;
    if ("sealed" in record.key) {
      if (options.sealingKey === undefined) {
        throw CorralError.invalidArgument(
          "ca.keyFile",
          "the cluster's CA key is sealed in the store; give this controller the cluster's key file (ca.keyFile)",
        );
      }
      keyPem = unseal(options.sealingKey, record.key.sealed, record.fingerprint);
    } else {
      keyPem = await readIfExists(join(options.dir, record.key.file));
      if (keyPem === undefined) {
        throw new CorralError(
          "FAILED_PRECONDITION",
          `the key of CA ${record.fingerprint} should be in ${join(options.dir, record.key.file)}, which is missing`,
        );
      }
    }
    signers.set(record.id, await CaSigner.fromPem(record.certificatePem, keyPem, `CA ${record.id}`));
  }
  return signers;
}

export function parseCsr(csrPem: string): x509.Pkcs10CertificateRequest {
  try {
    return new x509.Pkcs10CertificateRequest(csrPem);
  } catch (error) {
    throw new CorralError("INVALID_ARGUMENT", "csr_pem: not a PEM PKCS#10 certificate request", {
      cause: error,
    });
  }
}
