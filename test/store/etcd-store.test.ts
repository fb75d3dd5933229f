import { after, before, describe, it } from "node:test";
import { runStoreConformance } from "../../src/store/conformance.ts";
import { EtcdStore } from "../../src/store/etcd/etcd-store.ts";
import type { Store } from "../../src/store/store.ts";
import { etcdMissing, startTestEtcd, type TestEtcd } from "../helpers/etcd.ts";

const missing = etcdMissing();

if (missing !== undefined) {
  describe("Store conformance: etcd", () => {
    it("needs a real etcd", (t) => t.skip(missing));
  });
} else {
  // One etcd for the file; each case gets a prefix of its own, so it starts holding nothing. Cases run one
  // at a time within a file, so the cluster revision moves only with the case's own writes.
  let etcd: TestEtcd;
  let cases = 0;
  before(async () => {
    etcd = await startTestEtcd();
  });
  after(async () => {
    await etcd?.stop();
  });

  runStoreConformance("etcd", async () => {
    const prefix = `/corral-test/${String(++cases).padStart(4, "0")}`;
    const open = () => EtcdStore.open({ endpoints: [etcd.endpoint], prefix });
    let current: Store = await open();
    return {
      store: current,
      reopen: async () => {
        await current.close();
        current = await open();
        return current;
      },
      cleanup: async () => {
        await current.close();
      },
    };
  });
}
