/**
 * Writes `count` ready agent nodes straight into a fresh SQLite store, the way a controller that ran a
 * fleet leaves its data dir: 64 nodes (record and name index) per txn, so seeding 10 000 takes seconds.
 */
import { join } from "node:path";
import { encodeNode } from "../../src/core/nodes/node-codec.ts";
import { nodeKey, nodeNameKey } from "../../src/core/nodes/node-keys.ts";
import { buildNodeRecord } from "../../src/core/nodes/node-record.ts";
import { SqliteStore } from "../../src/store/sqlite/sqlite-store.ts";
import type { Op } from "../../src/store/types.ts";

export async function seedNodes(dataDir: string, count: number): Promise<void> {
  const store = await SqliteStore.open({ path: join(dataDir, "corral.db") });
  try {
    const now = Date.now();
    for (let first = 0; first < count; first += 64) {
      const ops: Op[] = [];
      for (let i = first; i < Math.min(count, first + 64); i++) {
        const node = buildNodeRecord(
          {
            name: `silent-${i}`,
            status: "ready",
            address: `10.${(i >> 16) & 255}.${(i >> 8) & 255}.${i & 255}:7444`,
            metadata: { rack: { kind: "string", value: `r${i % 40}` } },
            resources: { cpuCores: 4, memoryMb: 8192 },
          },
          now,
        );
        ops.push({ type: "put", key: nodeKey(node.id), value: encodeNode(node) });
        ops.push({ type: "put", key: nodeNameKey(node.name), value: JSON.stringify({ id: node.id }) });
      }
      await store.commit({ ops });
    }
  } finally {
    await store.close();
  }
}
