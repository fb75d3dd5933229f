import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { writeSealingKey } from "../../src/security/ca-key-file.ts";
import { startTestController, type TestController } from "../helpers/controller.ts";
import { startTestEtcd, type TestEtcd } from "../helpers/etcd.ts";

/** Several in-process controllers on one real etcd, sharing one CA (the same ca.keyFile). */
export interface HaCluster {
  readonly etcd: TestEtcd;
  readonly keyFile: string;
  readonly controllers: TestController[];
  /** Starts one more controller of the cluster. */
  add(name: string): Promise<TestController>;
  leader(): TestController | undefined;
  close(): Promise<void>;
}

export interface HaClusterOptions {
  readonly names: readonly string[];
  readonly prefix?: string;
  readonly leaseTtl?: string;
  /** Short intervals so that liveness can be watched in a test. */
  readonly liveness?: Record<string, unknown>;
  readonly lastSeenFlush?: string;
  readonly metrics?: Record<string, unknown>;
}

export async function startHaCluster(options: HaClusterOptions): Promise<HaCluster> {
  const etcd = await startTestEtcd();
  const keyDir = await mkdtemp(join(tmpdir(), "corral-ha-key-"));
  const keyFile = join(keyDir, "ca.key");
  await writeSealingKey(keyFile);
  const controllers: TestController[] = [];
  const raw = (name: string) => ({
    node: { name },
    store: {
      etcd: {
        endpoints: [etcd.endpoint],
        prefix: options.prefix ?? "/corral-ha",
        leaseTtl: options.leaseTtl ?? "2s",
        ...(options.lastSeenFlush === undefined ? {} : { lastSeenFlush: options.lastSeenFlush }),
      },
    },
    ca: { keyFile },
    ...(options.liveness === undefined ? {} : { liveness: options.liveness }),
    ...(options.metrics === undefined ? {} : { metrics: options.metrics }),
  });
  const cluster: HaCluster = {
    etcd,
    keyFile,
    controllers,
    async add(name) {
      const controller = await startTestController(raw(name));
      controllers.push(controller);
      return controller;
    },
    leader: () => controllers.find((c) => c.controller.context.facts.isLeader?.() === true),
    async close() {
      for (const controller of controllers) await controller.close().catch(() => undefined);
      await etcd.stop();
      await rm(keyDir, { recursive: true, force: true });
    },
  };
  try {
    for (const name of options.names) await cluster.add(name);
  } catch (error) {
    await cluster.close();
    throw error;
  }
  return cluster;
}
