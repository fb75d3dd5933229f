import assert from "node:assert/strict";
import { mkdir } from "node:fs/promises";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import {
  type Cluster,
  ClusterEventKind,
  ClusterState,
  ClustersService,
  MemberState,
  type WatchClustersResponse,
} from "../../src/gen/corral/v1/clusters_pb.ts";
import { plaintextClient } from "../helpers/clients.ts";
import { type ProvisioningCluster, startProvisioningCluster } from "../provisioning/fixture.ts";
import { testClusterPlans, testPlans } from "./test-plans.ts";

/** Reads a watch until `done` holds for what it has seen; aborts it after `ms` so the test cannot hang. */
async function readUntil(
  stream: AsyncIterable<WatchClustersResponse>,
  abort: AbortController,
  done: (seen: WatchClustersResponse[]) => boolean,
  ms = 60_000,
): Promise<WatchClustersResponse[]> {
  const seen: WatchClustersResponse[] = [];
  const timer = setTimeout(() => abort.abort(), ms);
  try {
    for await (const event of stream) {
      seen.push(event);
      if (done(seen)) return seen;
    }
  } catch (error) {
    if (!abort.signal.aborted) throw error;
  } finally {
    clearTimeout(timer);
  }
  assert.fail(`the watch ended before it saw what was expected: ${seen.map(describe_).join(", ")}`);
}

/** The same stream for several reads: a read that stops early must not close it. */
const keep = <T>(iterator: AsyncIterator<T>): AsyncIterable<T> => ({
  [Symbol.asyncIterator]: () => ({ next: () => iterator.next() }),
});

const describe_ = (e: WatchClustersResponse) =>
  `${ClusterEventKind[e.kind]} ${e.cluster?.name ?? ""} ${e.cluster ? ClusterState[e.cluster.state] : ""}`;

const memberStates = (c: Cluster | undefined) => c?.members.map((m) => MemberState[m.state]).join(",");

describe("WatchClusters streams clusters live", () => {
  let fleet: ProvisioningCluster;
  let dir: string;
  const clusters = () => plaintextClient(ClustersService, fleet.controller.bridgePort);

  before(async () => {
    fleet = await startProvisioningCluster(["srv", "ag-1"]);
    for (const [file, text] of Object.entries(testPlans)) await fleet.writePlan(file, text);
    dir = join(fleet.scratch, "k3s");
    await mkdir(dir);
    await clusters().createCluster({
      name: "old",
      server: "srv",
      agents: [],
      plans: testClusterPlans,
      parameters: { dir },
    });
  });

  after(async () => {
    await fleet?.close();
  });

  it("sends the current clusters, SYNCED, then creation, each member's progress, readiness, deletion", async () => {
    const abort = new AbortController();
    const stream = clusters().watchClusters({}, { signal: abort.signal });
    const iterator = stream[Symbol.asyncIterator]();
    const first = await readUntil(keep(iterator), abort, (seen) =>
      seen.some((e) => e.kind === ClusterEventKind.SYNCED),
    );
    assert.deepEqual(
      first.map((e) => [ClusterEventKind[e.kind], e.cluster?.name ?? ""]),
      [
        ["SNAPSHOT", "old"],
        ["SYNCED", ""],
      ],
    );

    await clusters().deleteCluster({ name: "old", force: true });
    await clusters().createCluster({
      name: "live",
      server: "srv",
      agents: ["ag-1"],
      plans: testClusterPlans,
      parameters: { dir },
    });
    await clusters().provisionCluster({ name: "live" });
    const live = await readUntil(keep(iterator), abort, (seen) =>
      seen.some(
        (e) =>
          e.cluster?.name === "live" &&
          e.cluster.state !== ClusterState.PROVISIONING &&
          e.cluster.state !== ClusterState.NEW,
      ),
    );
    assert.deepEqual(live[0] && [ClusterEventKind[live[0].kind], live[0].cluster?.name], ["DELETED", "old"]);
    const puts = live.slice(1);
    assert.ok(puts.every((e) => e.kind === ClusterEventKind.PUT && e.cluster?.name === "live"));
    assert.equal(puts[0]?.cluster?.state, ClusterState.NEW);
    const last = puts.at(-1)?.cluster;
    assert.equal(last?.state, ClusterState.READY, last?.message);
    assert.equal(memberStates(last), "PROVISIONED,PROVISIONED");
    // Progress between: the server provisioning while the agent still waits, then the agent provisioning.
    const progress = puts.map((e) => memberStates(e.cluster));
    assert.ok(progress.includes("PROVISIONING,PENDING"), progress.join(" | "));
    assert.ok(progress.includes("PROVISIONED,PROVISIONING"), progress.join(" | "));
    const revisions = live.map((e) => e.revision);
    assert.deepEqual(
      revisions,
      [...revisions].sort((a, b) => (a < b ? -1 : a > b ? 1 : 0)),
      "in revision order",
    );

    await clusters().deprovisionCluster({ name: "live" });
    const gone = await readUntil(keep(iterator), abort, (seen) =>
      seen.some((e) => e.cluster?.state === ClusterState.DEPROVISIONED),
    );
    assert.equal(gone.at(-1)?.cluster?.state, ClusterState.DEPROVISIONED);
    await clusters().deleteCluster({ name: "live" });
    const deleted = await readUntil(keep(iterator), abort, (seen) =>
      seen.some((e) => e.kind === ClusterEventKind.DELETED),
    );
    assert.deepEqual(
      deleted.map((e) => [ClusterEventKind[e.kind], e.cluster?.name]),
      [["DELETED", "live"]],
    );
    abort.abort();
  });

  it("a watch of one name sees only that cluster", async () => {
    await clusters().createCluster({
      name: "a",
      server: "srv",
      agents: [],
      plans: testClusterPlans,
      parameters: { dir },
    });
    const abort = new AbortController();
    const iterator = clusters()
      .watchClusters({ name: "b" }, { signal: abort.signal })
      [Symbol.asyncIterator]();
    const synced = await readUntil(keep(iterator), abort, (seen) =>
      seen.some((e) => e.kind === ClusterEventKind.SYNCED),
    );
    assert.deepEqual(
      synced.map((e) => ClusterEventKind[e.kind]),
      ["SYNCED"],
    );
    await clusters().createCluster({
      name: "ab",
      server: "srv",
      agents: [],
      plans: testClusterPlans,
      parameters: { dir },
    });
    await clusters().createCluster({
      name: "b",
      server: "srv",
      agents: [],
      plans: testClusterPlans,
      parameters: { dir },
    });
    const seen = await readUntil(keep(iterator), abort, (s) => s.length > 0);
    assert.deepEqual(
      seen.map((e) => [ClusterEventKind[e.kind], e.cluster?.name]),
      [["PUT", "b"]],
    );
    abort.abort();
  });

  it("refuses a malformed name", async () => {
    await assert.rejects(async () => {
      for await (const _ of clusters().watchClusters({ name: "Not A Name!" })) break;
    }, /INVALID_ARGUMENT|invalid/i);
  });
});
