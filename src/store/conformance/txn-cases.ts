import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { ErrorCode } from "../../base/errors.ts";
import type { Store } from "../store.ts";
import type { Txn } from "../types.ts";
import { caseOptions, type MakeStore, put, rejectsWith, withStore } from "./fixture.ts";

export function describeTransactions(make: MakeStore): void {
  describe("transactions", () => {
    it("swaps when the compare holds, and writes nothing when it does not", caseOptions, () =>
      withStore(make, async ({ store }) => {
        const first = await put(store, "/cas", "1");
        const swapped = await store.commit({
          compares: [{ key: "/cas", modRevision: first }],
          ops: [{ type: "put", key: "/cas", value: "2" }],
        });
        assert.deepEqual(swapped, { succeeded: true, revision: first + 1 });

        const stale = await store.commit({
          compares: [{ key: "/cas", modRevision: first }],
          ops: [
            { type: "put", key: "/cas", value: "3" },
            { type: "put", key: "/other", value: "x" },
          ],
        });
        assert.deepEqual(stale, { succeeded: false, revision: first + 1 });
        assert.equal((await store.get("/cas"))?.value, "2");
        assert.equal(await store.get("/other"), undefined);
        assert.equal(await store.revision(), first + 1);
      }),
    );

    it("treats modRevision 0 as 'must not exist'", caseOptions, () =>
      withStore(make, async ({ store }) => {
        const create: Txn = {
          compares: [{ key: "/once", modRevision: 0 }],
          ops: [{ type: "put", key: "/once", value: "a" }],
        };
        assert.equal((await store.commit(create)).succeeded, true);
        assert.equal((await store.commit(create)).succeeded, false);
        assert.equal((await store.get("/once"))?.value, "a");
      }),
    );

    it("applies many ops under one revision, all or nothing", caseOptions, () =>
      withStore(make, async ({ store }) => {
        await put(store, "/t/old", "x");
        const before = await store.revision();
        const result = await store.commit({
          compares: [{ key: "/t/new", modRevision: 0 }],
          ops: [
            { type: "put", key: "/t/a", value: "1" },
            { type: "put", key: "/t/b", value: "2" },
            { type: "delete", key: "/t/old" },
          ],
        });
        assert.deepEqual(result, { succeeded: true, revision: before + 1 });
        const items = (await store.list("/t/")).items;
        assert.deepEqual(
          items.map((item) => [item.key, item.modRevision]),
          [
            ["/t/a", before + 1],
            ["/t/b", before + 1],
          ],
        );
        const events = await store.changes(before + 1);
        assert.deepEqual(
          events.map((event) => [event.revision, event.type, event.key]),
          [
            [before + 1, "put", "/t/a"],
            [before + 1, "put", "/t/b"],
            [before + 1, "delete", "/t/old"],
          ],
        );
      }),
    );

    it("refuses a txn that writes a key twice or puts under its own deletePrefix", caseOptions, () =>
      withStore(make, async ({ store }) => {
        const before = await store.revision();
        await rejectsWith(
          store.commit({
            ops: [
              { type: "put", key: "/d", value: "1" },
              { type: "put", key: "/d", value: "2" },
            ],
          }),
          ErrorCode.InvalidArgument,
          "/d",
        );
        await rejectsWith(
          store.commit({
            ops: [
              { type: "deletePrefix", prefix: "/dir/" },
              { type: "put", key: "/dir/x", value: "1" },
            ],
          }),
          ErrorCode.InvalidArgument,
          "/dir/x",
        );
        await rejectsWith(
          store.commit({ ops: [{ type: "put", key: "", value: "1" }] }),
          ErrorCode.InvalidArgument,
          "key",
        );
        assert.equal(await store.revision(), before);
      }),
    );

    it("stays consistent under 200 concurrent compare-and-swap increments", caseOptions, () =>
      withStore(make, async ({ store }) => {
        await put(store, "/counter", "0");
        const start = await store.revision();
        const callers = 20;
        const perCaller = 10;
        const attempts = await Promise.all(
          Array.from({ length: callers }, () => incrementTimes(store, "/counter", perCaller)),
        );
        const counter = await store.get("/counter");
        assert.equal(counter?.value, String(callers * perCaller));
        assert.equal(counter?.version, callers * perCaller + 1);
        assert.equal(await store.revision(), start + callers * perCaller);
        assert.ok(attempts.every((count) => count >= perCaller));
      }),
    );

    it("gives 200 concurrent writers 200 distinct consecutive revisions", caseOptions, () =>
      withStore(make, async ({ store }) => {
        const start = await store.revision();
        const revisions = await Promise.all(
          Array.from({ length: 200 }, (_, i) => put(store, `/w/${String(i).padStart(3, "0")}`, String(i))),
        );
        const sorted = [...revisions].sort((a, b) => a - b);
        assert.deepEqual(
          sorted,
          Array.from({ length: 200 }, (_, i) => start + 1 + i),
        );
        const listed = await store.list("/w/");
        assert.equal(listed.items.length, 200);
        for (const item of listed.items) assert.equal(item.modRevision, revisions[Number(item.value)]);
      }),
    );
  });
}

/** Read, add one, write back only if untouched; returns the attempts it took. */
async function incrementTimes(store: Store, key: string, times: number): Promise<number> {
  let attempts = 0;
  for (let done = 0; done < times; ) {
    attempts++;
    if (attempts > 1_000) assert.fail("an increment could not get through in 1 000 attempts");
    const current = await store.get(key);
    assert.ok(current !== undefined);
    const result = await store.commit({
      compares: [{ key, modRevision: current.modRevision }],
      ops: [{ type: "put", key, value: String(Number(current.value) + 1) }],
    });
    if (result.succeeded) done++;
  }
  return attempts;
}
