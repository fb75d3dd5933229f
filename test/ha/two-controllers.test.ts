import assert from "node:assert/strict";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { ClusterService } from "../../src/gen/corral/v1/cluster_pb.ts";
import { NodesService } from "../../src/gen/corral/v1/nodes_pb.ts";
import { writeSealingKey } from "../../src/security/ca-key-file.ts";
import { plaintextClient } from "../helpers/clients.ts";
import { startTestController, type TestController } from "../helpers/controller.ts";
import { etcdMissing, startTestEtcd, type TestEtcd } from "../helpers/etcd.ts";

const missing = etcdMissing();
const leaseTtl = "2s";

async function waitFor<T>(what: string, withinMs: number, probe: () => T | undefined): Promise<T> {
  const deadline = Date.now() + withinMs;
  for (;;) {
    const value = probe();
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error(`${what}: not within ${withinMs} ms`);
    await new Promise((resolve) => setTimeout(resolve, 25));
  }
}

describe("two controllers on one etcd", { skip: missing }, () => {
  let etcd: TestEtcd;
  let a: TestController;
  let b: TestController;
  let keyDir: string;
  const prefix = "/corral-ha";

  before(async () => {
    etcd = await startTestEtcd();
    keyDir = await mkdtemp(join(tmpdir(), "corral-ha-key-"));
    const keyFile = join(keyDir, "ca.key");
    await writeSealingKey(keyFile);
    const store = { etcd: { endpoints: [etcd.endpoint], prefix, leaseTtl } };
    a = await startTestController({ node: { name: "ctl-a" }, store, ca: { keyFile } });
    b = await startTestController({ node: { name: "ctl-b" }, store, ca: { keyFile } });
  });
  after(async () => {
    await a?.close();
    await b?.close();
    await etcd?.stop();
    await rm(keyDir, { recursive: true, force: true });
  });

  const leading = (c: TestController) => c.controller.context.facts.isLeader?.() === true;

  it("share one registry: a node registered through A is listed by B", async () => {
    await a.controller.context.registry.register({ name: "worker-1", address: "127.0.0.1", port: 9001 });
    const { nodes } = await plaintextClient(NodesService, b.bridgePort).listNodes({});
    assert.ok(
      nodes.some((node) => node.name === "worker-1"),
      `B lists ${nodes.map((n) => n.name).join(", ")}`,
    );
  });

  it("elect exactly one leader, and status says which", async () => {
    const leader = await waitFor("a leader", 10_000, () => (leading(a) ? a : leading(b) ? b : undefined));
    assert.notEqual(leading(a), leading(b), "exactly one leads");
    const follower = leader === a ? b : a;
    const name = leader === a ? "ctl-a" : "ctl-b";
    const fromFollower = await plaintextClient(ClusterService, follower.bridgePort).getClusterStatus({});
    assert.equal(fromFollower.isLeader, false);
    assert.match(fromFollower.store, /^etcd \(/);
    await waitFor("the follower sees the leader", 5_000, () =>
      follower.controller.context.facts.leader?.() === name ? true : undefined,
    );
    const fromLeader = await plaintextClient(ClusterService, leader.bridgePort).getClusterStatus({});
    assert.equal(fromLeader.isLeader, true);
    assert.equal(fromLeader.leader, name);
  });

  it("hand the lead over when the leader closes, losing nothing written through it", async () => {
    const leader = leading(a) ? a : b;
    const follower = leader === a ? b : a;
    const written: string[] = [];
    for (let i = 0; i < 20; i++) {
      const node = await leader.controller.context.registry.register({ name: `through-leader-${i}` });
      written.push(node.name);
    }
    const closedAt = Date.now();
    await leader.close();
    await waitFor("the follower leads", 2 * 2_000 + 1_000, () => (leading(follower) ? true : undefined));
    const tookMs = Date.now() - closedAt;
    assert.ok(tookMs < 5_000, `failover took ${tookMs} ms`);
    const { nodes } = await plaintextClient(NodesService, follower.bridgePort).listNodes({});
    const names = new Set(nodes.map((node) => node.name));
    for (const name of [...written, "worker-1"]) assert.ok(names.has(name), `${name} was lost`);
    const status = await plaintextClient(ClusterService, follower.bridgePort).getClusterStatus({});
    assert.equal(status.isLeader, true);
  });
});
