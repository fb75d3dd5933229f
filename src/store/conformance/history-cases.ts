import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { ErrorCode } from "../../base/errors.ts";
import { caseOptions, type MakeStore, put, rejectsWith, summary, withStore } from "./fixture.ts";

export function describeHistory(make: MakeStore): void {
  describe("history", () => {
    it("lists changes from a revision, with values, previous values and a prefix filter", caseOptions, () =>
      withStore(make, async ({ store }) => {
        const start = await store.revision();
        await put(store, "/h/a", "1");
        await put(store, "/other", "x");
        await put(store, "/h/a", "2");
        await store.commit({ ops: [{ type: "delete", key: "/h/a" }] });
        assert.deepEqual(await store.changes(start + 1, { prefix: "/h/" }), [
          { revision: start + 1, type: "put", key: "/h/a", value: "1" },
          { revision: start + 3, type: "put", key: "/h/a", value: "2", prevValue: "1" },
          { revision: start + 4, type: "delete", key: "/h/a", prevValue: "2" },
        ]);
        assert.deepEqual(summary(await store.changes(start + 2)), [
          `${start + 2} put /other`,
          `${start + 3} put /h/a`,
          `${start + 4} delete /h/a`,
        ]);
        assert.deepEqual(await store.changes(start + 5), []);
      }),
    );

    it("pages changes by whole revisions", caseOptions, () =>
      withStore(make, async ({ store }) => {
        const start = await store.revision();
        await store.commit({
          ops: ["/a", "/b", "/c"].map((key) => ({ type: "put" as const, key, value: "1" })),
        });
        await put(store, "/d", "1");
        await put(store, "/e", "1");
        const revisionsOf = async (from: number, limit: number) =>
          (await store.changes(from, { limit })).map((event) => event.revision);
        assert.deepEqual(await revisionsOf(start + 1, 2), [start + 1, start + 1, start + 1]);
        assert.deepEqual(await revisionsOf(start + 1, 4), [start + 1, start + 1, start + 1, start + 2]);
        assert.deepEqual(await revisionsOf(start + 2, 1), [start + 2]);
      }),
    );

    it(
      "refuses compacted history with OUT_OF_RANGE naming the oldest revision, and keeps current values",
      caseOptions,
      () =>
        withStore(make, async ({ store }) => {
          const start = await store.revision();
          await put(store, "/kept", "early");
          for (let i = 0; i < 4; i++) await put(store, "/busy", String(i));
          await store.compact(start + 4);
          const error = await rejectsWith(store.changes(start + 1), ErrorCode.OutOfRange, String(start + 4));
          assert.equal(error.details.oldestRevision, String(start + 4));
          const watch = store.watch(start + 2, { signal: new AbortController().signal });
          await rejectsWith(watch[Symbol.asyncIterator]().next(), ErrorCode.OutOfRange, String(start + 4));
          assert.deepEqual(summary(await store.changes(start + 4)), [
            `${start + 4} put /busy`,
            `${start + 5} put /busy`,
          ]);
          assert.equal((await store.get("/kept"))?.value, "early");
          assert.equal((await store.get("/busy"))?.value, "3");
          assert.equal(store.activeWatchers(), 0);
        }),
    );

    it("refuses to compact past the current revision", caseOptions, () =>
      withStore(make, async ({ store }) => {
        const current = await put(store, "/a", "1");
        await rejectsWith(store.compact(current + 5), ErrorCode.OutOfRange, String(current));
        assert.equal((await store.changes(current)).length, 1);
      }),
    );
  });
}
