import assert from "node:assert/strict";
import { getEventListeners } from "node:events";
import { describe, it } from "node:test";
import { ErrorCode } from "../../base/errors.ts";
import type { StoreEvent } from "../types.ts";
import { caseOptions, type MakeStore, put, rejectsWith, summary, takeEvents, withStore } from "./fixture.ts";

export function describeWatch(make: MakeStore): void {
  describe("watch", () => {
    it("replays history from a revision, then streams each txn as one batch", caseOptions, () =>
      withStore(make, async ({ store }) => {
        const start = await store.revision();
        await put(store, "/w/a", "1");
        await put(store, "/w/b", "1");
        await put(store, "/w/c", "1");
        const controller = new AbortController();
        const iterator = store.watch(start + 2, { signal: controller.signal })[Symbol.asyncIterator]();
        assert.deepEqual(summary(await takeEvents(iterator, 2)), [
          `${start + 2} put /w/b`,
          `${start + 3} put /w/c`,
        ]);

        const pending = iterator.next();
        await store.commit({
          ops: [
            { type: "put", key: "/w/d", value: "1" },
            { type: "delete", key: "/w/a" },
          ],
        });
        const live = await pending;
        assert.equal(live.done, false);
        assert.deepEqual(summary(live.value ?? []), [`${start + 4} put /w/d`, `${start + 4} delete /w/a`]);
        assert.equal(live.value?.[1]?.prevValue, "1");
        controller.abort();
      }),
    );

    it("delivers only keys under the watched prefix, from history and live", caseOptions, () =>
      withStore(make, async ({ store }) => {
        const start = await store.revision();
        // Above the surrogates in UTF-16 but below them in UTF-8: a prefix test by string range would drop it.
        const keys = ["/out/a", "/in/a", "/inx", "/in/\uFFFD"];
        for (const key of keys) await put(store, key, "1");
        const expected = [`${start + 2} put /in/a`, `${start + 4} put /in/\uFFFD`];
        const controller = new AbortController();
        const iterator = store
          .watch(start + 1, { prefix: "/in/", signal: controller.signal })
          [Symbol.asyncIterator]();
        assert.deepEqual(summary(await takeEvents(iterator, 2)), expected);
        const live = takeEvents(iterator, 2);
        for (const key of keys) await put(store, key, "2");
        assert.deepEqual(summary(await live), [`${start + 6} put /in/a`, `${start + 8} put /in/\uFFFD`]);
        controller.abort();
      }),
    );

    it("shows two watchers the same events in the same order as changes()", caseOptions, () =>
      withStore(make, async ({ store }) => {
        const start = await store.revision();
        const controller = new AbortController();
        const first = store.watch(start + 1, { signal: controller.signal })[Symbol.asyncIterator]();
        const second = store.watch(start + 1, { signal: controller.signal })[Symbol.asyncIterator]();
        const firstSeen = takeEvents(first, 60);
        await Promise.all(
          Array.from({ length: 30 }, (_, i) =>
            store.commit({
              ops: [
                { type: "put", key: `/o/${i % 7}`, value: String(i) },
                { type: "put", key: `/o/x${i}`, value: String(i) },
              ],
            }),
          ),
        );
        const secondSeen = await takeEvents(second, 60);
        assert.deepEqual(await firstSeen, secondSeen);
        assert.deepEqual(secondSeen, await store.changes(start + 1));
        controller.abort();
      }),
    );

    it("ends the iterator on abort and leaves no watcher or listener behind", caseOptions, () =>
      withStore(make, async ({ store }) => {
        const start = await store.revision();
        const controller = new AbortController();
        const iterator = store.watch(start + 1, { signal: controller.signal })[Symbol.asyncIterator]();
        const pending = iterator.next();
        await put(store, "/a", "1");
        assert.equal((await pending).done, false);
        const waiting = iterator.next();
        controller.abort();
        assert.deepEqual(await waiting, { done: true, value: undefined });
        assert.equal(store.activeWatchers(), 0);

        // Leaving the loop early must release too, and not grow a long-lived signal's listener list.
        const serverLifetime = new AbortController();
        for await (const batch of store.watch(start + 1, { signal: serverLifetime.signal })) {
          assert.equal(batch[0]?.key, "/a");
          break;
        }
        assert.equal(store.activeWatchers(), 0);
        assert.equal(getEventListeners(serverLifetime.signal, "abort").length, 0);
      }),
    );

    it(
      "drops a watcher that falls behind with RESOURCE_EXHAUSTED, and resuming loses nothing",
      caseOptions,
      () =>
        withStore(make, async ({ store }) => {
          const start = await store.revision();
          const controller = new AbortController();
          const iterator = store
            .watch(start + 1, { signal: controller.signal, maxLag: 5 })
            [Symbol.asyncIterator]();
          const pending = iterator.next();
          await put(store, "/lag/0", "0");
          const delivered = await takeEventsFrom(pending);
          for (let i = 1; i <= 20; i++) await put(store, `/lag/${i}`, String(i));
          const error = await rejectsWith(iterator.next(), ErrorCode.ResourceExhausted, "resume");
          const lastDelivered = delivered.at(-1)?.revision ?? start;
          assert.equal(error.details.resumeRevision, String(lastDelivered + 1));
          assert.match(error.message, new RegExp(`revision ${lastDelivered + 1}\\b`));
          assert.equal(store.activeWatchers(), 0);

          const resumed = store
            .watch(lastDelivered + 1, { signal: controller.signal })
            [Symbol.asyncIterator]();
          const rest = await takeEvents(resumed, start + 21 - lastDelivered);
          assert.deepEqual(
            [...delivered, ...rest].map((event) => event.key),
            Array.from({ length: 21 }, (_, i) => `/lag/${i}`),
          );
          controller.abort();
        }),
    );

    it("ends open watches with UNAVAILABLE when the store closes", caseOptions, () =>
      withStore(make, async ({ store }) => {
        const start = await store.revision();
        const iterator = store
          .watch(start + 1, { signal: new AbortController().signal })
          [Symbol.asyncIterator]();
        const pending = iterator.next();
        await put(store, "/a", "1");
        await pending;
        const waiting = iterator.next();
        await store.close();
        await rejectsWith(waiting, ErrorCode.Unavailable, "closed");
        await rejectsWith(store.get("/a"), ErrorCode.Unavailable, "closed");
      }),
    );
  });
}

async function takeEventsFrom(pending: Promise<IteratorResult<StoreEvent[]>>): Promise<StoreEvent[]> {
  const result = await pending;
  if (result.done === true) assert.fail("the watch ended before its first batch");
  return result.value;
}
