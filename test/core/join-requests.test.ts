import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { JoinRequestBook, type NewJoinRequest } from "../../src/core/admission/join-requests.ts";
import { emptyResources } from "../../src/core/nodes/node.ts";
import { makeCore, rejectsWith } from "./core-fixture.ts";

const limits = { maxPending: 3, perSourcePerMinute: 2, keepDecidedMs: 60_000 };

function request(name: string, source = "10.0.0.1", fingerprint = `sha256:${name}`): NewJoinRequest {
  return {
    nodeId: `${name}-id`,
    name,
    metadata: { type: { kind: "string", value: "my-type" } },
    address: "",
    sourceAddress: source,
    keyFingerprint: fingerprint,
    csrPem: "csr",
    resources: emptyResources(),
    services: [],
    labels: {},
    version: "",
  };
}

describe("JoinRequestBook", () => {
  it("numbers requests, lists the pending ones and lets one decision through", async () => {
    await using core = await makeCore();
    const book = new JoinRequestBook(core.store, core.clock, limits);
    const a = await book.submit(request("a"), 60_000);
    const b = await book.submit(request("b", "10.0.0.2"), 60_000);
    assert.deepEqual([a.id, b.id], [1, 2]);
    assert.deepEqual(
      (await book.list({ includeDecided: false })).map((r) => r.name),
      ["a", "b"],
    );
    assert.equal((await book.find("b")).id, 2);
    const accepted = await book.answer(a.id, true, "admin:alice");
    assert.equal(accepted.state, "accepted");
    assert.equal(accepted.decidedBy, "admin:alice");
    await rejectsWith(book.answer(a.id, false, "admin:bob"), "FAILED_PRECONDITION", "already accepted");
    assert.deepEqual(
      (await book.list({ includeDecided: false })).map((r) => r.name),
      ["b"],
    );
    assert.deepEqual(
      (await book.list({ includeDecided: true })).map((r) => r.state),
      ["accepted", "pending"],
    );
  });

  it("gives a reconnecting node its waiting request back instead of filing another", async () => {
    await using core = await makeCore();
    const book = new JoinRequestBook(core.store, core.clock, limits);
    const first = await book.submit(request("a"), 60_000);
    const again = await book.submit(request("a"), 60_000);
    assert.equal(again.id, first.id);
    assert.equal((await book.list({ includeDecided: false })).length, 1);
  });

  it("caps pending requests and requests per source per minute", async () => {
    await using core = await makeCore();
    const book = new JoinRequestBook(core.store, core.clock, limits);
    await book.submit(request("a", "10.0.0.1"), 600_000);
    await book.submit(request("b", "10.0.0.1"), 600_000);
    await rejectsWith(book.submit(request("c", "10.0.0.1"), 600_000), "RESOURCE_EXHAUSTED", "10.0.0.1");
    await book.submit(request("c", "10.0.0.2"), 600_000);
    await rejectsWith(
      book.submit(request("d", "10.0.0.3"), 600_000),
      "RESOURCE_EXHAUSTED",
      "already waiting",
    );
    core.clock.advance(61_000);
    await book.answer(1, false, "admin");
    await book.submit(request("d", "10.0.0.1"), 600_000);
  });

  it("refuses a second request for a name that is already waiting", async () => {
    await using core = await makeCore();
    const book = new JoinRequestBook(core.store, core.clock, limits);
    await book.submit(request("same", "10.0.0.1", "sha256:one"), 60_000);
    await rejectsWith(
      book.submit(request("same", "10.0.0.2", "sha256:two"), 60_000),
      "ALREADY_EXISTS",
      "same",
    );
  });

  it("wakes a waiter when the request is decided, and refuses answers after expiry", async () => {
    await using core = await makeCore();
    const book = new JoinRequestBook(core.store, core.clock, limits);
    const a = await book.submit(request("a"), 60_000);
    const waiting = book.waitForDecision(a.id, AbortSignal.timeout(10_000));
    await book.answer(a.id, false, "admin:alice", "unknown hardware");
    const decided = await waiting;
    assert.equal(decided.state, "rejected");
    assert.equal(decided.reason, "unknown hardware");

    const b = await book.submit(request("b", "10.0.0.9"), 60_000);
    core.clock.advance(60_001);
    await rejectsWith(book.answer(b.id, true, "admin"), "FAILED_PRECONDITION", "expired");
    assert.equal((await book.expire(b.id)).state, "expired");
    assert.equal((await book.list({ includeDecided: false })).length, 0);
  });
});
