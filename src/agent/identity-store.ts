import { randomUUID } from "node:crypto";
import { rename, rm } from "node:fs/promises";
import { hostname } from "node:os";
import { join } from "node:path";
import { CorralError } from "../base/errors.ts";
import { asObject } from "../core/json-fields.ts";
import type { MetadataValue } from "../core/nodes/node.ts";
import { metadataValueFromJson, metadataValueToJson } from "../core/nodes/node-codec.ts";
import { readIfExists, writeSecretFile } from "../security/pem.ts";

/** What the node knows about itself, kept in its data dir across restarts. */
export interface NodeIdentity {
  nodeId: string;
  name: string;
  metadata: Record<string, MetadataValue>;
  /** Set once the node has joined: where its controller is and which CA it pinned. */
  controller?: {
    address: string;
    /** Every controller of the cluster (`--join a,b,c`), tried in order; absent: `address` only. */
    addresses?: string[];
    /**
     * Controllers the cluster named in heartbeat answers (several controllers on etcd), tried after
     * `addresses`; replaced whenever the cluster's list changes.
     */
    learned?: string[];
    caFingerprint: string;
  };
}

/** The node's credentials: present only after it joined. */
export interface NodeCredentials {
  privateKeyPem: string;
  certificatePem: string;
  caPem: string;
}

const files = {
  identity: "identity.json",
  key: "node.key",
  certificate: "node.crt",
  ca: "ca.crt",
} as const;

/**
 * The agent's data dir: identity.json, and after joining node.key, node.crt and ca.crt — every file
 * mode 0600, each written to a temporary name and renamed, so a crash never leaves half a credential.
 */
export class IdentityStore {
  readonly dir: string;

  constructor(dir: string) {
    this.dir = dir;
  }

  /** The stored identity, or a new one (fresh node id, the host name as name) written now. */
  async loadOrCreate(defaultName = hostname()): Promise<NodeIdentity> {
    const text = await readIfExists(join(this.dir, files.identity));
    if (text !== undefined) return decodeIdentity(text, join(this.dir, files.identity));
    const identity: NodeIdentity = { nodeId: randomUUID(), name: defaultName, metadata: {} };
    await this.save(identity);
    return identity;
  }

  async save(identity: NodeIdentity): Promise<void> {
    await this.#write(files.identity, `${JSON.stringify(encodeIdentity(identity), null, 2)}\n`);
  }

  async loadCredentials(): Promise<NodeCredentials | undefined> {
    const [privateKeyPem, certificatePem, caPem] = await Promise.all(
      [files.key, files.certificate, files.ca].map((file) => readIfExists(join(this.dir, file))),
    );
    if (privateKeyPem === undefined || certificatePem === undefined || caPem === undefined) return undefined;
    return { privateKeyPem, certificatePem, caPem };
  }

  async saveCredentials(credentials: NodeCredentials): Promise<void> {
    await this.#write(files.key, credentials.privateKeyPem);
    await this.#write(files.certificate, credentials.certificatePem);
    await this.#write(files.ca, credentials.caPem);
  }

  /** Forgets the membership (the node was removed, or signed out): it has to join again. */
  async clearCredentials(): Promise<void> {
    await Promise.all(
      [files.key, files.certificate, files.ca].map((file) => rm(join(this.dir, file), { force: true })),
    );
  }

  async #write(file: string, contents: string): Promise<void> {
    const path = join(this.dir, file);
    // One temporary file per write: two saves at once (setNode while the link stores the identity)
    // must not share one, or the second rename finds it gone.
    const temporary = `${path}.tmp-${process.pid}-${randomUUID()}`;
    await writeSecretFile(temporary, contents);
    await rename(temporary, path);
  }
}

function encodeIdentity(identity: NodeIdentity): unknown {
  return {
    ...identity,
    metadata: Object.fromEntries(
      Object.entries(identity.metadata).map(([k, v]) => [k, metadataValueToJson(v)]),
    ),
  };
}

function decodeIdentity(text: string, path: string): NodeIdentity {
  try {
    const json = asObject(JSON.parse(text), path);
    const metadata = asObject(json.metadata ?? {}, `${path}: metadata`);
    const identity: NodeIdentity = {
      nodeId: String(json.nodeId),
      name: String(json.name),
      metadata: Object.fromEntries(
        Object.entries(metadata).map(([k, v]) => [k, metadataValueFromJson(v, k)]),
      ),
    };
    const controller = json.controller as NodeIdentity["controller"] | undefined;
    if (controller !== undefined) identity.controller = controller;
    return identity;
  } catch (error) {
    throw new CorralError(
      "FAILED_PRECONDITION",
      `${path} is damaged (${(error as Error).message}); fix it or move the data dir away to start as a new node`,
      { cause: error },
    );
  }
}
