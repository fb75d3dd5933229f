import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { caseOptions, type MakeStore, put, summary, takeEvents, withStore } from "./fixture.ts";

export function describeDurability(make: MakeStore): void {
  describe("durability", () => {
    it("keeps data, revision and history across a reopen", caseOptions, (t) =>
      withStore(make, async ({ store, reopen }) => {
        if (reopen === undefined) {
          t.skip("this store cannot be reopened");
          return;
        }
        const start = await store.revision();
        await put(store, "/d/a", "1");
        await store.commit({
          ops: [
            { type: "put", key: "/d/b", value: "2" },
            { type: "put", key: "/d/a", value: "3" },
          ],
        });
        const reopened = await reopen();
        assert.equal(await reopened.revision(), start + 2);
        assert.deepEqual(await reopened.get("/d/a"), {
          key: "/d/a",
          value: "3",
          createRevision: start + 1,
          modRevision: start + 2,
          version: 2,
        });
        const controller = new AbortController();
        const iterator = reopened.watch(start + 1, { signal: controller.signal })[Symbol.asyncIterator]();
        assert.deepEqual(summary(await takeEvents(iterator, 3)), [
          `${start + 1} put /d/a`,
          `${start + 2} put /d/b`,
          `${start + 2} put /d/a`,
        ]);
        const pending = iterator.next();
        assert.equal(await put(reopened, "/d/c", "4"), start + 3);
        assert.deepEqual(summary((await pending).value ?? []), [`${start + 3} put /d/c`]);
        controller.abort();
      }),
    );
  });
}
