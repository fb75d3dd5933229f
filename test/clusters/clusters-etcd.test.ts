import assert from "node:assert/strict";
import { mkdir, mkdtemp, readdir, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import {
  type Cluster,
  ClusterState,
  ClustersService,
  MemberState,
} from "../../src/gen/corral/v1/clusters_pb.ts";
import { writeSealingKey } from "../../src/security/ca-key-file.ts";
import { eventually, joinWithToken, startTestAgent, type TestAgent } from "../helpers/agent.ts";
import { plaintextClient } from "../helpers/clients.ts";
import { startTestController, type TestController } from "../helpers/controller.ts";
import { etcdMissing, startTestEtcd, type TestEtcd } from "../helpers/etcd.ts";
import { testClusterPlans, testPlans } from "./test-plans.ts";

const missing = etcdMissing();

describe("clusters on an etcd store", { skip: missing }, () => {
  let etcd: TestEtcd;
  let scratch: string;
  let dir: string;
  let controller: TestController;
  const agents: TestAgent[] = [];
  const clusters = () => plaintextClient(ClustersService, controller.bridgePort);

  before(async () => {
    etcd = await startTestEtcd();
    scratch = await mkdtemp(join(tmpdir(), "corral-clusters-etcd-"));
    const plansDir = join(scratch, "plans");
    dir = join(scratch, "k3s");
    await mkdir(plansDir);
    await mkdir(dir);
    for (const [file, text] of Object.entries(testPlans)) await writeFile(join(plansDir, file), text);
    const keyFile = join(scratch, "ca.key");
    await writeSealingKey(keyFile);
    const raw = {
      store: { etcd: { endpoints: [etcd.endpoint], prefix: "/clusters-test" } },
      ca: { keyFile },
      provisioning: { plansDir },
    };
    controller = await startTestController(raw);
    for (const name of ["e-srv", "e-ag"]) {
      const agent = await startTestAgent({ name });
      agents.push(agent);
      await joinWithToken(controller, agent);
    }
  });

  after(async () => {
    for (const agent of agents) await agent.close();
    await controller?.close();
    await etcd?.stop();
    if (scratch !== undefined) await rm(scratch, { recursive: true, force: true });
  });

  async function settled(name: string): Promise<Cluster> {
    return eventually(
      async () => {
        const { cluster } = await clusters().getCluster({ name });
        const busy =
          cluster?.state === ClusterState.PROVISIONING || cluster?.state === ClusterState.DEPROVISIONING;
        return cluster !== undefined && !busy ? cluster : undefined;
      },
      60_000,
      `cluster ${name} to settle`,
    );
  }

  it("keeps the cluster in etcd and runs its whole lifecycle", async () => {
    await clusters().createCluster({
      name: "on-etcd",
      server: "e-srv",
      agents: ["e-ag"],
      plans: testClusterPlans,
      parameters: { dir },
    });
    await clusters().provisionCluster({ name: "on-etcd" });
    const ready = await settled("on-etcd");
    assert.equal(ready.state, ClusterState.READY, ready.message);
    const token = (await readFile(join(dir, "server-node-token"), "utf8")).trim();
    assert.match(await readFile(join(dir, "agent-e-ag.join"), "utf8"), new RegExp(`token=${token}`));

    // A controller restarted on the same etcd sees the same cluster.
    controller = await controller.restart();
    const again = (await clusters().getCluster({ name: "on-etcd" })).cluster;
    assert.equal(again?.state, ClusterState.READY);
    assert.ok(again?.hasJoinToken);

    await clusters().deprovisionCluster({ name: "on-etcd" });
    const gone = await settled("on-etcd");
    assert.equal(gone.state, ClusterState.DEPROVISIONED, gone.message);
    for (const member of gone.members) assert.equal(member.state, MemberState.DEPROVISIONED);
    assert.deepEqual(await readdir(dir), []);
    await clusters().deleteCluster({ name: "on-etcd" });
  });
});
