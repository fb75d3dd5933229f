import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { Etcd3 } from "etcd3";
import { CorralError } from "../../src/base/errors.ts";
import { EtcdLeaderElection } from "../../src/controller/leader-election.ts";
import { createLogger } from "../../src/observability/logger.ts";
import { EtcdStore, type Fence } from "../../src/store/etcd/etcd-store.ts";
import { eventually } from "../helpers/agent.ts";
import { etcdMissing, startTestEtcd, type TestEtcd } from "../helpers/etcd.ts";

const missing = etcdMissing();
const logger = createLogger({ level: process.env.CORRAL_TEST_LOG ?? "silent" });

describe("fencing leader-only writes", { skip: missing }, () => {
  let etcd: TestEtcd;
  let store: EtcdStore;
  let raw: Etcd3;

  before(async () => {
    etcd = await startTestEtcd();
    store = await EtcdStore.open({ endpoints: [etcd.endpoint], prefix: "/fence" });
    raw = new Etcd3({ hosts: etcd.endpoint });
  });
  after(async () => {
    raw?.close();
    await store?.close();
    await etcd?.stop();
  });

  it("applies a fenced write while the claim holds, refuses it once the claim is gone", async () => {
    await raw.put("claim").value("me");
    const created = Number((await raw.get("claim").exec()).kvs[0]?.create_revision);
    const claim: Fence = { key: Buffer.from("claim"), createRevision: created };
    const fencedOff: CorralError[] = [];
    const fenced = store.fenced(
      () => claim,
      (error) => fencedOff.push(error),
    );

    const ok = await fenced.commit({ ops: [{ type: "put", key: "/status", value: "suspect" }] });
    assert.equal(ok.succeeded, true);

    // An ordinary conflict stays a conflict (succeeded: false), not a lost lead.
    const conflict = await fenced.commit({
      compares: [{ key: "/status", modRevision: 1 }],
      ops: [{ type: "put", key: "/status", value: "x" }],
    });
    assert.equal(conflict.succeeded, false);
    assert.equal(fencedOff.length, 0);

    // The claim is recreated by someone else (a new leader's key at the same name): another revision.
    await raw.delete().key("claim");
    await raw.put("claim").value("someone else");
    await assert.rejects(
      fenced.commit({ ops: [{ type: "put", key: "/status", value: "down" }] }),
      (error: unknown) => error instanceof CorralError && error.code === "FAILED_PRECONDITION",
    );
    assert.equal(fencedOff.length, 1, "the controller heard that it lost the lead");
    assert.equal((await store.get("/status"))?.value, "suspect", "the deposed write was not applied");
  });

  it("refuses a fenced write at once while the controller does not lead", async () => {
    const before = await store.revision();
    const fenced = store.fenced(() => undefined);
    await assert.rejects(
      fenced.commit({ ops: [{ type: "put", key: "/status", value: "down" }] }),
      (error: unknown) => error instanceof CorralError && error.code === "FAILED_PRECONDITION",
    );
    assert.equal(await store.revision(), before, "nothing was written");
  });

  it("a leader whose lease is revoked stops leading, and its old claim no longer writes", async () => {
    const election = await EtcdLeaderElection.start({
      endpoints: [etcd.endpoint],
      prefix: "/fence",
      name: "ctl-1",
      ttlSeconds: 2,
      retryMs: 200,
      logger,
    });
    try {
      const claim = await eventually(async () => election.fence(), 10_000, "elected");
      const leadChanges: boolean[] = [];
      election.onChange((leading) => leadChanges.push(leading));
      // Revoke the campaign's lease behind its back (what etcd does when keepalives stop arriving).
      const leaseId = claim.key.toString("utf8").split("/").at(-1) ?? "";
      await raw.leaseClient.leaseRevoke({ ID: leaseId });
      const fenced = store.fenced(() => claim);
      await assert.rejects(
        fenced.commit({ ops: [{ type: "put", key: "/status", value: "from the old leader" }] }),
        (error: unknown) => error instanceof CorralError && error.code === "FAILED_PRECONDITION",
      );
      await eventually(async () => (leadChanges.includes(false) ? true : undefined), 10_000, "stepped down");
      // It campaigns again and, alone, leads again: under a new claim.
      const next = await eventually(async () => election.fence(), 10_000, "elected again");
      assert.notEqual(next.createRevision, claim.createRevision);
      const ok = await store
        .fenced(() => election.fence())
        .commit({ ops: [{ type: "put", key: "/status", value: "from the new lead" }] });
      assert.equal(ok.succeeded, true);
    } finally {
      await election.close();
    }
  });
});
