import assert from "node:assert/strict";
import { after, before, beforeEach, describe, it } from "node:test";
import { ManualClock } from "../../src/base/clock.ts";
import { CorralError } from "../../src/base/errors.ts";
import type { CaState } from "../../src/security/ca-state.ts";
import { type BookCa, CertificateBook, isOverdue } from "../../src/security/certificate-book.ts";
import { CertificateInventory, type CertificateRecord } from "../../src/security/certificate-inventory.ts";
import { SqliteStore } from "../../src/store/sqlite/sqlite-store.ts";

const day = 86_400_000;

const caRecord = (id: string) => ({
  id,
  fingerprint: `fp-${id}`,
  certificatePem: "",
  key: { file: "unused" },
  createdAt: 0,
});

/** The CA as the book sees it, with its state set by each test (no keys needed for the rules). */
class FakeCa implements BookCa {
  state: CaState = { version: 1, cas: [caRecord("ca-1")], issuing: "ca-1", presenting: "ca-1" };
  constructor(readonly inventory: CertificateInventory) {}
  get issuingId() {
    return this.state.issuing;
  }
  trustedCertificates() {
    return [];
  }
}

const refusal = (message: RegExp) => (error: unknown) =>
  error instanceof CorralError && error.code === "FAILED_PRECONDITION" && message.test(error.message);

const worker = { id: "n-1", name: "worker-1", status: "ready", role: "agent" };

describe("CertificateBook: the certificate rules, on a real store and a manual clock", () => {
  let store: SqliteStore;
  let inventory: CertificateInventory;
  let clock: ManualClock;
  let ca: FakeCa;
  let book: CertificateBook;
  let serial = 0;

  before(async () => {
    store = await SqliteStore.open({ path: ":memory:" });
  });
  after(async () => store.close());
  beforeEach(async () => {
    for (const { key } of (await store.list("/")).items)
      await store.commit({ ops: [{ type: "delete", key }] });
    inventory = new CertificateInventory(store);
    clock = new ManualClock();
    ca = new FakeCa(inventory);
    book = new CertificateBook({ ca, clock });
  });

  const issue = async (fields: Partial<CertificateRecord> & Pick<CertificateRecord, "kind">) => {
    serial++;
    const now = clock.now();
    const record: CertificateRecord = {
      serial: (0x1000 + serial).toString(16),
      commonName: fields.nodeId ?? `cn-${serial}`,
      subject: `CN=cn-${serial}`,
      dnsNames: [],
      ipAddresses: [],
      uris: [],
      notBefore: now,
      notAfter: now + 30 * day,
      fingerprint: `f-${serial}`,
      caId: ca.state.issuing,
      caFingerprint: `fp-${ca.state.issuing}`,
      issuedAt: now,
      ...fields,
    };
    await inventory.record(record);
    return record;
  };

  it("a node's newest valid certificate is current, an older one is not; every operator one is", async () => {
    const old = await issue({ kind: "node", nodeId: "n-1" });
    clock.advance(1000);
    const fresh = await issue({ kind: "node", nodeId: "n-1" });
    const alice1 = await issue({ kind: "operator", operator: { role: "admin", name: "alice" } });
    const alice2 = await issue({ kind: "operator", operator: { role: "admin", name: "alice" } });
    const { current } = await book.list();
    assert.deepEqual([...current].sort(), [fresh.serial, alice1.serial, alice2.serial].sort());
    assert.ok(!current.has(old.serial));
  });

  it("a valid certificate whose CA a rotation retired is untrusted, and no longer current", async () => {
    const retired = await issue({ kind: "node", nodeId: "n-1" });
    ca.state = { version: 1, cas: [caRecord("ca-2")], issuing: "ca-2", presenting: "ca-2" };
    const { listed, current } = await book.list();
    assert.equal(listed.find((c) => c.record.serial === retired.serial)?.status, "untrusted");
    assert.equal((await book.find(retired.serial)).status, "untrusted");
    assert.equal(current.size, 0);
  });

  it("find: expired once past its end, NOT_FOUND for a serial never issued", async () => {
    const record = await issue({ kind: "node", nodeId: "n-1" });
    clock.advance(31 * day);
    assert.equal((await book.find(record.serial)).status, "expired");
    await assert.rejects(
      book.find("abcd"),
      (e: unknown) => e instanceof CorralError && e.code === "NOT_FOUND",
    );
  });

  it("renewal is refused for a node that left and for a controller, and nothing is recorded", async () => {
    await assert.rejects(book.requestRenewal({ ...worker, status: "left" }, "alice"), refusal(/has left/));
    await assert.rejects(
      book.requestRenewal({ ...worker, role: "controller" }, "alice"),
      refusal(/is a controller/),
    );
    assert.equal(await inventory.renewalRequest(worker.id), undefined);
    const requested = await book.requestRenewal(worker, "alice");
    assert.deepEqual(await inventory.renewalRequest(worker.id), requested);
  });

  it("renewal advice: renew when asked after issue, or when the certificate is not from the issuing CA", async () => {
    const record = await issue({ kind: "node", nodeId: worker.id });
    assert.deepEqual(await book.renewalAdvice(worker.id, record.serial), { renewNow: false, reason: "" });
    clock.advance(1000);
    await book.requestRenewal(worker, "alice");
    const asked = await book.renewalAdvice(worker.id, record.serial);
    assert.equal(asked.renewNow, true);
    assert.match(asked.reason, /alice asked/);
    clock.advance(1000);
    const renewed = await issue({ kind: "node", nodeId: worker.id });
    assert.equal((await book.renewalAdvice(worker.id, renewed.serial)).renewNow, false);
    ca.state = { ...ca.state, cas: [...ca.state.cas, caRecord("ca-2")], issuing: "ca-2" };
    const rotating = await book.renewalAdvice(worker.id, renewed.serial);
    assert.equal(rotating.renewNow, true);
    assert.match(rotating.reason, /rotated/);
    assert.equal((await book.issuedSince(worker.id, renewed.issuedAt))?.record.serial, renewed.serial);
  });

  it("revocation refuses a controller's own certificate, one already revoked, and a node with none valid", async () => {
    const server = await issue({ kind: "server" });
    await assert.rejects(book.revocationTargets({ serial: server.serial }), refusal(/controller's own/));
    await assert.rejects(book.revocationTargets({ node: worker }), refusal(/no valid certificate/));
    const record = await issue({ kind: "node", nodeId: worker.id });
    const targets = await book.revocationTargets({ node: worker });
    assert.deepEqual(
      targets.map((t) => t.record.serial),
      [record.serial],
    );
    const revoked = await book.revoke(targets, "lost", "alice");
    assert.equal(revoked[0]?.status, "revoked");
    assert.equal(revoked[0]?.revocation?.by, "alice");
    await assert.rejects(book.revocationTargets({ serial: record.serial }), refusal(/already revoked/));
    assert.equal((await book.find(server.serial)).status, "valid");
  });

  it("statistics warn of an overdue node certificate only while its node is a member", async () => {
    const record = await issue({ kind: "node", nodeId: worker.id });
    await issue({ kind: "operator", operator: { role: "admin", name: "alice" } });
    clock.advance(26 * day);
    assert.ok(isOverdue(record, clock.now()));
    const listing = await book.list();
    const withMember = book.statistics(listing, [worker], 7 * day);
    assert.deepEqual(
      withMember.notices.map((n) => n.record?.kind),
      ["node", "operator"],
    );
    assert.match(withMember.notices[0]?.message ?? "", /expires in 4d and was not renewed/);
    assert.match(withMember.notices[1]?.message ?? "", /issue new credentials/);
    assert.equal(withMember.expiringSoon, 2);
    assert.deepEqual(withMember.validByKind, { node: 1, operator: 1 });
    const gone = book.statistics(listing, [], 7 * day);
    assert.deepEqual(
      gone.notices.map((n) => n.record?.kind),
      ["operator"],
    );
    assert.equal(gone.issuedLastDay, 0);
  });
});
