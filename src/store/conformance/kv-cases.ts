import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { ErrorCode } from "../../base/errors.ts";
import { caseOptions, type MakeStore, put, rejectsWith, withStore } from "./fixture.ts";

export function describeKeyValues(make: MakeStore): void {
  describe("keys and revisions", () => {
    it("returns what was put, and nothing for a key never written", caseOptions, () =>
      withStore(make, async ({ store }) => {
        assert.equal(await store.get("/a"), undefined);
        const revision = await put(store, "/a", '{"n":1}');
        assert.deepEqual(await store.get("/a"), {
          key: "/a",
          value: '{"n":1}',
          createRevision: revision,
          modRevision: revision,
          version: 1,
        });
      }),
    );

    it("moves one revision, shared by all keys, up by one per write", caseOptions, () =>
      withStore(make, async ({ store }) => {
        const start = await store.revision();
        const revisions = [
          await put(store, "/a", "1"),
          await put(store, "/b", "1"),
          await put(store, "/a", "2"),
        ];
        assert.deepEqual(revisions, [start + 1, start + 2, start + 3]);
        assert.equal(await store.revision(), start + 3);
        assert.equal((await store.get("/b"))?.modRevision, start + 2);
      }),
    );

    it(
      "keeps createRevision, moves modRevision and counts versions; a deleted key starts over",
      caseOptions,
      () =>
        withStore(make, async ({ store }) => {
          const created = await put(store, "/k", "1");
          const modified = await put(store, "/k", "2");
          assert.deepEqual(await store.get("/k"), {
            key: "/k",
            value: "2",
            createRevision: created,
            modRevision: modified,
            version: 2,
          });
          await store.commit({ ops: [{ type: "delete", key: "/k" }] });
          assert.equal(await store.get("/k"), undefined);
          const recreated = await put(store, "/k", "3");
          assert.deepEqual(await store.get("/k"), {
            key: "/k",
            value: "3",
            createRevision: recreated,
            modRevision: recreated,
            version: 1,
          });
        }),
    );

    it("deletes one key, or every key under a prefix and nothing beside it", caseOptions, () =>
      withStore(make, async ({ store }) => {
        for (const key of ["/p/a", "/p/b", "/p/c/d", "/pq", "/q"]) await put(store, key, key);
        await store.commit({ ops: [{ type: "delete", key: "/q" }] });
        assert.equal(await store.get("/q"), undefined);
        const result = await store.commit({ ops: [{ type: "deletePrefix", prefix: "/p/" }] });
        assert.equal(result.succeeded, true);
        const left = await store.list("");
        assert.deepEqual(
          left.items.map((item) => item.key),
          ["/pq"],
        );
        const events = await store.changes(result.revision);
        assert.deepEqual(
          events.map((event) => [event.type, event.key, event.prevValue]),
          [
            ["delete", "/p/a", "/p/a"],
            ["delete", "/p/b", "/p/b"],
            ["delete", "/p/c/d", "/p/c/d"],
          ],
        );
        assert.ok(events.every((event) => event.revision === result.revision));
      }),
    );

    it("does not move the revision for a txn that changes nothing", caseOptions, () =>
      withStore(make, async ({ store }) => {
        await put(store, "/x", "1");
        const before = await store.revision();
        for (const ops of [
          [{ type: "delete", key: "/missing" }],
          [{ type: "deletePrefix", prefix: "/nothing/" }],
          [],
        ] as const) {
          const result = await store.commit({ ops: [...ops] });
          assert.deepEqual(result, { succeeded: true, revision: before });
        }
        assert.equal(await store.revision(), before);
        assert.deepEqual(await store.changes(before + 1), []);
      }),
    );

    it("lists a prefix in key byte order, in pages", caseOptions, () =>
      withStore(make, async ({ store }) => {
        // U+FFFD sorts before an emoji in UTF-8 bytes but after it in UTF-16 units: etcd's order is bytes.
        const keys = ["/l/b", "/l/\u{1F600}", "/l/a", "/l/\uFFFD", "/l/c", "/l/ab"];
        for (const key of keys) await put(store, key, "v");
        await put(store, "/lx", "outside");
        await put(store, "/m/a", "outside");
        const expected = [...keys].sort((a, b) => Buffer.compare(Buffer.from(a), Buffer.from(b)));
        const all = await store.list("/l/");
        assert.deepEqual(
          all.items.map((item) => item.key),
          expected,
        );
        assert.equal(all.revision, await store.revision());
        assert.equal(all.more, false);

        const pages: string[][] = [];
        let startAfter: string | undefined;
        for (let page = 0; page < keys.length; page++) {
          const result = await store.list(
            "/l/",
            startAfter === undefined ? { limit: 4 } : { limit: 4, startAfter },
          );
          pages.push(result.items.map((item) => item.key));
          startAfter = result.items.at(-1)?.key;
          if (!result.more) break;
        }
        assert.deepEqual(pages, [expected.slice(0, 4), expected.slice(4)]);
      }),
    );

    it("refuses malformed keys and limits with INVALID_ARGUMENT", caseOptions, () =>
      withStore(make, async ({ store }) => {
        await rejectsWith(store.get(""), ErrorCode.InvalidArgument, "key");
        await rejectsWith(store.get("/bad\uD800"), ErrorCode.InvalidArgument, "key");
        await rejectsWith(store.list("/", { limit: 0 }), ErrorCode.InvalidArgument, "limit");
        await rejectsWith(store.changes(-1), ErrorCode.InvalidArgument, "fromRevision");
      }),
    );
  });
}
