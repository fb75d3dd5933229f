import type { Clock } from "../base/clock.ts";
import { nodeKeyPrefix, nodeNameKeyPrefix } from "../core/nodes/node-keys.ts";
import { NodeRegistry } from "../core/nodes/node-registry.ts";
import type { Logger } from "../observability/logger.ts";
import { ensureAdminCredentials } from "../security/admin-credentials.ts";
import type { CertificateAuthority } from "../security/certificate-authority.ts";
import { revokedPrefix } from "../security/certificate-inventory.ts";
import { PrincipalResolver } from "../security/principal-resolver.ts";
import { ReadCache } from "../store/etcd/read-cache.ts";
import type { Core } from "./assemble-core.ts";
import type { Storage } from "./assemble-store.ts";
import { openClusterCa } from "./ca-setup.ts";
import type { ControllerConfig } from "./config.ts";
import { assemble, type Stack } from "./stack.ts";

export interface Security {
  readonly ca: CertificateAuthority;
  /** Where the first admin's client credentials are (`<data dir>/admin`). */
  readonly adminCredentialsDir: string;
  /** Who a caller is, from its certificate or bearer token. */
  readonly resolver: PrincipalResolver;
  readonly stack: Stack;
}

/** The cluster's CA, the first admin's credentials, and how callers are identified. */
export function assembleSecurity(
  config: ControllerConfig,
  storage: Storage,
  core: Pick<Core, "registry" | "tokens">,
  clock: Clock,
  logger: Logger,
): Promise<Security> {
  return assemble(async (stack) => {
    const { store, etcd, leader } = storage;
    // One CA for every controller of the cluster, in the store (see ca-setup.ts).
    const ca = await openClusterCa({
      store,
      dataDir: config.dataDir,
      clusterName: config.nodeName,
      ...(config.ca?.keyFile === undefined ? {} : { keyFile: config.ca.keyFile }),
      ...(config.ca === undefined ? {} : { rotationOverlapMs: config.ca.rotationOverlapMs }),
      logger,
      clock,
      isLeader: () => leader.isLeader(),
    });
    stack.defer(() => ca.close());
    const adminCredentialsDir = await ensureAdminCredentials(ca, config.dataDir);
    // With etcd, the caller's node and the revocation list are read from a watched mirror rather than
    // from etcd on every call (two etcd reads per heartbeat otherwise); see read-cache.ts.
    const readCache =
      etcd === undefined
        ? undefined
        : new ReadCache({ store: etcd, prefixes: [nodeKeyPrefix, nodeNameKeyPrefix, revokedPrefix], logger });
    if (readCache !== undefined) stack.defer(() => readCache.close());
    const lookups = readCache?.view();
    const resolver =
      lookups === undefined
        ? new PrincipalResolver(core.registry, core.tokens, store, ca)
        : new PrincipalResolver(new NodeRegistry(lookups, clock), core.tokens, lookups, ca);
    return { ca, adminCredentialsDir, resolver };
  });
}
