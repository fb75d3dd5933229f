import { pause } from "../base/pause.ts";
import { NodeView } from "../core/nodes/node-view.ts";
import type { Logger } from "../observability/logger.ts";
import { EtcdStore } from "../store/etcd/etcd-store.ts";
import { SqliteStore } from "../store/sqlite/sqlite-store.ts";
import type { Store } from "../store/store.ts";
import { type ControllerConfig, readEtcdTls } from "./config.ts";
import { alwaysLeader, EtcdLeaderElection, type LeaderGate } from "./leader-election.ts";
import { assemble, type Stack } from "./stack.ts";

export interface Storage {
  readonly store: Store;
  /** Present with an etcd store: the controllers share it (watches, leases, the controller registry). */
  readonly etcd: EtcdStore | undefined;
  readonly leader: LeaderGate;
  /** The store for leader-only writes: with etcd they carry the leader's claim and are refused once it is gone. */
  readonly leaderStore: Store;
  /** The nodes as the store holds them, in memory and kept current by its watch (reads come from here). */
  readonly nodeView: NodeView;
  readonly stack: Stack;
}

/** The store and the leader election that goes with it. */
export function assembleStore(config: ControllerConfig, logger: Logger): Promise<Storage> {
  return assemble(async (stack) => {
    const storeConfig = config.store;
    const etcdTls =
      storeConfig.kind === "etcd" && storeConfig.tls !== undefined
        ? await readEtcdTls(storeConfig.tls)
        : undefined;
    const etcd =
      storeConfig.kind === "etcd"
        ? await EtcdStore.open({
            endpoints: [...storeConfig.endpoints],
            prefix: storeConfig.prefix,
            ...(etcdTls === undefined ? {} : { tls: etcdTls }),
          })
        : undefined;
    const store: Store =
      etcd ?? (await SqliteStore.open({ path: storeConfig.kind === "sqlite" ? storeConfig.path : "" }));
    stack.defer(() => store.close());
    // With SQLite this controller is the only one, so it always leads.
    const leader: LeaderGate =
      storeConfig.kind === "etcd"
        ? await EtcdLeaderElection.start({
            endpoints: storeConfig.endpoints,
            prefix: storeConfig.prefix,
            name: config.nodeName,
            ttlSeconds: storeConfig.leaseTtlSeconds,
            logger,
            ...(etcdTls === undefined ? {} : { tls: etcdTls }),
          })
        : alwaysLeader(config.nodeName);
    stack.defer(() => leader.close());
    const leaderStore: Store =
      etcd === undefined
        ? store
        : etcd.fenced(
            () => leader.fence?.(),
            (error) => leader.lost?.(error),
          );
    const nodeView = await NodeView.start(store, {
      pause,
      report: (problem, details) => logger.warn(details, problem),
    });
    stack.defer(() => nodeView.close());
    return { store, etcd, leader, leaderStore, nodeView };
  });
}
