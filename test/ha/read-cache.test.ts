import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { CorralError } from "../../src/base/errors.ts";
import { createLogger } from "../../src/observability/logger.ts";
import { EtcdStore } from "../../src/store/etcd/etcd-store.ts";
import { ReadCache } from "../../src/store/etcd/read-cache.ts";
import { eventually } from "../helpers/agent.ts";
import { etcdMissing, startTestEtcd, type TestEtcd } from "../helpers/etcd.ts";

const missing = etcdMissing();
const logger = createLogger({ level: process.env.CORRAL_TEST_LOG ?? "silent" });

describe("the etcd read cache (hot lookups from a watched mirror)", { skip: missing }, () => {
  let etcd: TestEtcd;
  let here: EtcdStore;
  let elsewhere: EtcdStore;
  let cache: ReadCache;

  before(async () => {
    etcd = await startTestEtcd();
    here = await EtcdStore.open({ endpoints: [etcd.endpoint], prefix: "/rc" });
    // Another controller's store on the same etcd.
    elsewhere = await EtcdStore.open({ endpoints: [etcd.endpoint], prefix: "/rc" });
    await here.commit({ ops: [{ type: "put", key: "/revoked/1", value: "r1" }] });
    cache = new ReadCache({ store: here, prefixes: ["/revoked/"], logger, checkEveryMs: 100 });
  });
  after(async () => {
    await cache?.close();
    await here?.close();
    await elsewhere?.close();
    await etcd?.stop();
  });

  it("answers like the store once loaded, and takes in another controller's writes", async () => {
    const view = cache.view();
    await eventually(async () => (cache.synced ? true : undefined), 10_000, "loaded");
    assert.equal((await view.get("/revoked/1"))?.value, "r1");
    assert.equal(await view.get("/revoked/2"), undefined);
    await elsewhere.commit({ ops: [{ type: "put", key: "/revoked/2", value: "r2" }] });
    await eventually(
      async () => ((await view.get("/revoked/2"))?.value === "r2" ? true : undefined),
      5_000,
      "r2",
    );
    await elsewhere.commit({ ops: [{ type: "delete", key: "/revoked/2" }] });
    await eventually(
      async () => ((await view.get("/revoked/2")) === undefined ? true : undefined),
      5_000,
      "gone",
    );
  });

  it("reads this controller's own writes at once", async () => {
    const view = cache.view();
    for (let i = 0; i < 20; i++) {
      await here.commit({ ops: [{ type: "put", key: "/revoked/mine", value: `v${i}` }] });
      assert.equal((await view.get("/revoked/mine"))?.value, `v${i}`);
    }
    await here.commit({ ops: [{ type: "deletePrefix", prefix: "/revoked/mine" }] });
    assert.equal(await view.get("/revoked/mine"), undefined);
  });

  it("does not answer from memory while etcd cannot be reached, and recovers after", async () => {
    const view = cache.view();
    await etcd.kill();
    try {
      await eventually(async () => (cache.synced ? undefined : true), 10_000, "the cache noticed");
      await assert.rejects(
        view.get("/revoked/1"),
        (error: unknown) => error instanceof CorralError && error.code === "UNAVAILABLE",
      );
    } finally {
      await etcd.revive();
    }
    await eventually(async () => (cache.synced ? true : undefined), 20_000, "loaded again");
    assert.equal((await view.get("/revoked/1"))?.value, "r1");
  });
});
