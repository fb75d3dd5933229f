import assert from "node:assert/strict";
import { mkdir, readdir, readFile } from "node:fs/promises";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { timestampMs } from "@bufbuild/protobuf/wkt";
import { Code, ConnectError } from "@connectrpc/connect";
import {
  type Cluster,
  ClusterRole,
  ClusterState,
  ClustersService,
  MemberState,
} from "../../src/gen/corral/v1/clusters_pb.ts";
import { ProvisioningService } from "../../src/gen/corral/v1/provisioning_pb.ts";
import { eventually } from "../helpers/agent.ts";
import { plaintextClient } from "../helpers/clients.ts";
import { type ProvisioningCluster, startProvisioningCluster } from "../provisioning/fixture.ts";
import { testClusterPlans, testPlans } from "./test-plans.ts";

const finished = (state: ClusterState) =>
  state !== ClusterState.PROVISIONING && state !== ClusterState.DEPROVISIONING;

describe("clusters with a k3s lifecycle (test plans of local commands)", () => {
  let fleet: ProvisioningCluster;
  let dir: string;
  const clusters = () => plaintextClient(ClustersService, fleet.controller.bridgePort);
  const jobs = () => plaintextClient(ProvisioningService, fleet.controller.bridgePort);

  async function settled(name: string): Promise<Cluster> {
    return eventually(
      async () => {
        const { cluster } = await clusters().getCluster({ name });
        return cluster !== undefined && finished(cluster.state) ? cluster : undefined;
      },
      60_000,
      `cluster ${name} to settle`,
    );
  }

  before(async () => {
    fleet = await startProvisioningCluster(["srv", "ag-1", "ag-2", "ag-3"]);
    for (const [file, text] of Object.entries(testPlans)) await fleet.writePlan(file, text);
    dir = join(fleet.scratch, "k3s");
    await mkdir(dir);
  });

  after(async () => {
    await fleet?.close();
  });

  it("provisions the server first, hands its token to the agents, retries a failed agent", async () => {
    const { cluster: created } = await clusters().createCluster({
      name: "edge",
      server: "srv",
      agents: ["ag-1", "ag-2"],
      plans: testClusterPlans,
      parameters: { dir, failOnce: "ag-2" },
      agentConcurrency: 2,
    });
    assert.equal(created?.state, ClusterState.NEW);
    assert.deepEqual(
      created?.members.map((m) => [m.nodeName, m.role, m.state]),
      [
        ["srv", ClusterRole.SERVER, MemberState.PENDING],
        ["ag-1", ClusterRole.AGENT, MemberState.PENDING],
        ["ag-2", ClusterRole.AGENT, MemberState.PENDING],
      ],
    );
    const { cluster: started } = await clusters().provisionCluster({ name: "edge" });
    assert.equal(started?.state, ClusterState.PROVISIONING);

    const cluster = await settled("edge");
    assert.equal(cluster.state, ClusterState.READY, cluster.message);
    assert.ok(cluster.hasJoinToken);
    assert.equal(cluster.healthyMembers, 3);
    for (const member of cluster.members) {
      assert.equal(member.state, MemberState.PROVISIONED, `${member.nodeName}: ${member.message}`);
      assert.equal(member.nodeStatus, "ready");
    }
    const attempts = Object.fromEntries(cluster.members.map((m) => [m.nodeName, m.attempts]));
    assert.deepEqual(attempts, { srv: 1, "ag-1": 1, "ag-2": 2 }, "ag-2 failed once and was retried");

    // The server's job finished before the agents' job started.
    assert.deepEqual(
      cluster.jobs.map((j) => j.phase),
      ["server", "agents"],
    );
    const [serverJob, agentsJob] = await Promise.all(
      cluster.jobs.map(async (j) => (await jobs().getJob({ jobId: j.jobId })).job),
    );
    assert.ok(serverJob?.finishedAt !== undefined && agentsJob?.startedAt !== undefined);
    assert.ok(timestampMs(serverJob.finishedAt) <= timestampMs(agentsJob.startedAt));
    assert.equal(agentsJob.attempt, 2, "the agents' job was retried once");
    assert.equal(agentsJob.concurrency, 2, "the agents run in parallel, at most agent_concurrency at once");
    assert.deepEqual(
      agentsJob.nodes.map((n) => n.nodeName),
      ["ag-1", "ag-2"],
    );

    // Each agent got the token the server printed (the K10… form, not the secret the server was given).
    const serverToken = (await readFile(join(dir, "server-node-token"), "utf8")).trim();
    assert.match(serverToken, /^K10testsrv::server:[0-9a-f]{48}$/);
    for (const agent of ["ag-1", "ag-2"]) {
      const join_ = await readFile(join(dir, `agent-${agent}.join`), "utf8");
      assert.equal(join_, `server=${cluster.serverUrl}\ntoken=${serverToken}\n`);
    }
    assert.match(cluster.serverUrl, /^https:\/\/127\.0\.0\.1:6443$/);

    // Nowhere in what the API shows: not in the cluster, not in the jobs' parameters or output.
    const shown = JSON.stringify([cluster, serverJob, agentsJob], (_key, value: unknown) =>
      typeof value === "bigint" ? String(value) : value,
    );
    assert.ok(!shown.includes(serverToken.split(":").at(-1) ?? "-"), "the secret is not shown");
    const serverOutput = serverJob.nodes[0]?.steps.map((s) => s.output).join("");
    assert.match(serverOutput ?? "", /corral-token: \*\*\*/);
  });

  it("adds an agent to a ready cluster and provisions only it", async () => {
    await clusters().addClusterNodes({ name: "edge", nodes: ["ag-3"], role: ClusterRole.AGENT });
    await clusters().provisionCluster({ name: "edge" });
    const cluster = await settled("edge");
    assert.equal(cluster.state, ClusterState.READY, cluster.message);
    assert.equal(cluster.jobs.at(-1)?.phase, "agents");
    const last = (await jobs().getJob({ jobId: cluster.jobs.at(-1)?.jobId ?? "" })).job;
    assert.deepEqual(
      last?.nodes.map((n) => n.nodeName),
      ["ag-3"],
    );
    assert.ok((await readdir(dir)).includes("agent-ag-3.join"));
  });

  it("removing a provisioned agent runs its uninstall plan", async () => {
    await clusters().removeClusterNodes({ name: "edge", nodes: ["ag-3"] });
    const cluster = await eventually(async () => {
      const { cluster: c } = await clusters().getCluster({ name: "edge" });
      return c !== undefined && !c.members.some((m) => m.nodeName === "ag-3") ? c : undefined;
    });
    assert.equal(cluster.members.length, 3);
    assert.ok(!(await readdir(dir)).some((file) => file.includes("ag-3")));
  });

  it("refuses what would break the cluster", async () => {
    const refused = async (call: Promise<unknown>, code: Code) =>
      assert.rejects(call, (error: unknown) => ConnectError.from(error).code === code);
    await refused(
      clusters().createCluster({ name: "edge", server: "ag-3", plans: testClusterPlans }),
      Code.AlreadyExists,
    );
    await refused(clusters().createCluster({ name: "Bad Name", server: "srv" }), Code.InvalidArgument);
    await refused(
      clusters().createCluster({ name: "x", server: "srv", parameters: { token: "mine" } }),
      Code.InvalidArgument,
    );
    await refused(
      clusters().addClusterNodes({ name: "edge", nodes: ["ag-3"], role: ClusterRole.SERVER }),
      Code.InvalidArgument,
    );
    await refused(clusters().removeClusterNodes({ name: "edge", nodes: ["srv"] }), Code.FailedPrecondition);
    await refused(clusters().deleteCluster({ name: "edge" }), Code.FailedPrecondition);
    await refused(clusters().getCluster({ name: "nope" }), Code.NotFound);
  });

  it("deprovision runs the uninstall plans and leaves nothing behind", async () => {
    const { cluster: started } = await clusters().deprovisionCluster({ name: "edge" });
    assert.equal(started?.state, ClusterState.DEPROVISIONING);
    const cluster = await settled("edge");
    assert.equal(cluster.state, ClusterState.DEPROVISIONED, cluster.message);
    assert.ok(!cluster.hasJoinToken);
    for (const member of cluster.members) assert.equal(member.state, MemberState.DEPROVISIONED);
    assert.deepEqual(
      cluster.jobs.slice(-2).map((j) => j.phase),
      ["uninstall agents", "uninstall server"],
    );
    assert.deepEqual(await readdir(dir), [], "every file the plans wrote is gone");
    await clusters().deleteCluster({ name: "edge" });
    const { clusters: left } = await clusters().listClusters({});
    assert.deepEqual(left, []);
  });

  it("an agent that keeps failing is rolled back as its plan says; the cluster fails", async () => {
    await clusters().createCluster({
      name: "broken",
      server: "srv",
      agents: ["ag-1", "ag-2"],
      plans: testClusterPlans,
      parameters: { dir, failAlways: "ag-1" },
    });
    await clusters().provisionCluster({ name: "broken" });
    const cluster = await settled("broken");
    assert.equal(cluster.state, ClusterState.FAILED);
    const byName = new Map(cluster.members.map((m) => [m.nodeName, m]));
    assert.equal(byName.get("ag-1")?.state, MemberState.ROLLED_BACK);
    assert.equal(byName.get("ag-1")?.attempts, 2, "tried, then retried once");
    assert.match(
      byName.get("ag-1")?.message ?? "",
      /start the agent.*rolled back with test-k3s-agent-uninstall/,
    );
    assert.equal(byName.get("ag-2")?.state, MemberState.PROVISIONED);
    assert.equal(cluster.jobs.at(-1)?.phase, "rollback");
    const files = await readdir(dir);
    assert.ok(!files.some((file) => file.includes("ag-1")), "the rollback removed what ag-1 wrote");
    assert.ok(files.includes("agent-ag-2.join"));

    await clusters().deprovisionCluster({ name: "broken" });
    assert.equal((await settled("broken")).state, ClusterState.DEPROVISIONED);
    assert.deepEqual(await readdir(dir), []);
    await clusters().deleteCluster({ name: "broken" });
  });
});
