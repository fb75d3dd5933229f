import { join } from "node:path";
import type { Clock } from "../base/clock.ts";
import { parseDuration } from "../base/duration.ts";
import { defaults } from "../defaults.ts";
import type { Logger } from "../observability/logger.ts";
import { refreshAdminCredentials } from "../security/admin-credentials.ts";
import { readSealingKey } from "../security/ca-key-file.ts";
import { CertificateAuthority } from "../security/certificate-authority.ts";
import type { Store } from "../store/store.ts";

export interface ClusterCaOptions {
  readonly store: Store;
  readonly dataDir: string;
  readonly clusterName: string;
  /** `ca.keyFile`: seals the CA keys in the store (required when controllers share an etcd store). */
  readonly keyFile?: string;
  readonly logger: Logger;
  readonly clock?: Clock;
  readonly isLeader: () => boolean;
  readonly rotationOverlapMs?: number;
}

/**
 * Opens the cluster's CA (created in the store by the first controller, loaded by the others), follows
 * it for rotations started on any controller, keeps the admin credentials in the data dir on the
 * current CA, and prunes the inventory of long-expired certificates on the leader.
 */
export async function openClusterCa(options: ClusterCaOptions): Promise<CertificateAuthority> {
  const sealingKey = options.keyFile === undefined ? undefined : await readSealingKey(options.keyFile);
  const ca = await CertificateAuthority.open({
    store: options.store,
    dir: join(options.dataDir, "ca"),
    clusterName: options.clusterName,
    ...(sealingKey === undefined ? {} : { sealingKey }),
    ...(options.clock === undefined ? {} : { clock: options.clock }),
    logger: options.logger,
    isLeader: options.isLeader,
    ...(options.rotationOverlapMs === undefined ? {} : { rotationOverlapMs: options.rotationOverlapMs }),
  });
  ca.onChange((change) => {
    refreshAdminCredentials(ca, options.dataDir, change.issuingChanged).catch((error: unknown) =>
      options.logger.warn({ err: error }, "could not bring the admin credentials onto the new CA"),
    );
  });
  ca.start({ pruneExpiredAfterMs: parseDuration(defaults.certificates.keepExpired) });
  return ca;
}
