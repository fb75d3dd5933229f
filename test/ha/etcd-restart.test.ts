import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { ClusterService } from "../../src/gen/corral/v1/cluster_pb.ts";
import { ModelEventType, ModelsService } from "../../src/gen/corral/v1/models_pb.ts";
import { eventually } from "../helpers/agent.ts";
import { plaintextClient } from "../helpers/clients.ts";
import type { TestController } from "../helpers/controller.ts";
import { etcdMissing } from "../helpers/etcd.ts";
import { type HaCluster, startHaCluster } from "./ha-cluster.ts";

const missing = etcdMissing();

describe("etcd restarted under load", { skip: missing }, () => {
  let ha: HaCluster;

  before(async () => {
    ha = await startHaCluster({ names: ["ctl-a", "ctl-b"], leaseTtl: "2s" });
  });
  after(async () => {
    await ha?.close();
  });

  it("controllers serve again without a restart: writes, one leader, the same watch streams", async (t) => {
    const [a, b] = ha.controllers as [TestController, TestController];
    await eventually(async () => ha.leader(), 10_000, "a leader");
    const models = (c: TestController) => plaintextClient(ModelsService, c.bridgePort);
    const start = (await models(a).listModels({})).revision;

    // A watch opened before the outage, read in the background: it must carry on by itself.
    const watched: string[] = [];
    const stopWatching = new AbortController();
    const watching = (async () => {
      for await (const event of models(b).watchModels(
        { fromRevision: start + 1n },
        { signal: stopWatching.signal },
      )) {
        if (event.type === ModelEventType.PUT && event.model !== undefined) watched.push(event.model.name);
      }
    })().catch(() => undefined);

    const acknowledged = new Set<string>();
    const byController = new Map<string, number>();
    let failures = 0;
    let writing = true;
    const writer = async (c: TestController, tag: string) => {
      for (let i = 0; writing && i < 10_000; i++) {
        const name = `w-${tag}-${i}`;
        try {
          await models(c).addModel({ name, version: "1", layerCount: 1 }, { timeoutMs: 5_000 });
          acknowledged.add(name);
          byController.set(tag, (byController.get(tag) ?? 0) + 1);
        } catch {
          failures++;
          await new Promise((resolve) => setTimeout(resolve, 100));
        }
      }
    };
    const writers = [writer(a, "a"), writer(b, "b")];
    await eventually(async () => (acknowledged.size >= 20 ? true : undefined), 20_000, "writes flowing");

    await ha.etcd.kill();
    await new Promise((resolve) => setTimeout(resolve, 3_000));
    const failedWhileDown = failures;
    const beforeRevive = { a: byController.get("a") ?? 0, b: byController.get("b") ?? 0 };
    await ha.etcd.revive();
    const revivedAt = Date.now();

    await eventually(
      async () =>
        (byController.get("a") ?? 0) >= beforeRevive.a + 10 &&
        (byController.get("b") ?? 0) >= beforeRevive.b + 10
          ? true
          : undefined,
      30_000,
      "writes through both controllers after etcd came back",
    );
    const recoveredMs = Date.now() - revivedAt;
    writing = false;
    await Promise.all(writers);
    assert.ok(failedWhileDown > 0, "writes failed while etcd was down (the outage was real)");

    const leaderName = await eventually(
      async () => {
        const answers = await Promise.all(
          [a, b].map((c) => plaintextClient(ClusterService, c.bridgePort).getClusterStatus({})),
        );
        const leaders = new Set(answers.map((s) => s.leader));
        const healthy = answers.every((s) => s.storeHealth?.healthy === true);
        const listed = answers.every((s) => s.controllers.length === 2);
        return leaders.size === 1 && answers.filter((s) => s.isLeader).length === 1 && healthy && listed
          ? [...leaders][0]
          : undefined;
      },
      20_000,
      "one leader, etcd healthy and both controllers listed, as seen from both",
    );
    assert.ok(leaderName === "ctl-a" || leaderName === "ctl-b");
    const settledMs = Date.now() - revivedAt;

    const names = new Set((await models(b).listModels({})).models.map((m) => m.name));
    assert.deepEqual(
      [...acknowledged].filter((name) => !names.has(name)),
      [],
      "acknowledged writes lost",
    );
    await eventually(
      async () => ([...acknowledged].every((name) => watched.includes(name)) ? true : undefined),
      20_000,
      "the watch opened before the outage delivers every acknowledged write",
    );
    const watchedMs = Date.now() - revivedAt;
    stopWatching.abort();
    await watching;
    t.diagnostic(
      `${acknowledged.size} writes acknowledged, ${failures} failed; writes flowed again ${recoveredMs} ms after etcd was back; ` +
        `one leader, both listed, etcd healthy after ${settledMs} ms; the old watch caught up after ${watchedMs} ms`,
    );
  });
});
