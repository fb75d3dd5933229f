import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { runStoreConformance } from "../../src/store/conformance.ts";
import { SqliteStore } from "../../src/store/sqlite/sqlite-store.ts";
import type { Store } from "../../src/store/store.ts";

runStoreConformance("SQLite file", async () => {
  const dir = await mkdtemp(join(tmpdir(), "corral-store-"));
  const path = join(dir, "store.db");
  let current: Store = await SqliteStore.open({ path });
  return {
    store: current,
    reopen: async () => {
      await current.close();
      current = await SqliteStore.open({ path });
      return current;
    },
    cleanup: async () => {
      await current.close();
      await rm(dir, { recursive: true, force: true });
    },
  };
});

runStoreConformance("SQLite :memory:", async () => {
  const store = await SqliteStore.open({ path: ":memory:" });
  return { store, cleanup: () => store.close() };
});
