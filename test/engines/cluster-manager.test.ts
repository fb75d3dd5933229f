import assert from "node:assert/strict";
import { describe, it } from "node:test";
import type { ClusterView } from "../../src/core/clusters/cluster-engine.ts";
import { NodeHealthBook } from "../../src/core/nodes/node-health.ts";
import type { StepSpec } from "../../src/core/provisioning/provisioning-step.ts";
import { ClusterManager } from "../../src/engines/cluster-manager.ts";
import type { NodeStepRunner } from "../../src/engines/provisioning-dispatcher.ts";
import { testClusterPlans, testPlans } from "../clusters/test-plans.ts";
import { rejectsWith } from "../core/core-fixture.ts";
import {
  dispatcherOf,
  type EngineFixture,
  planSource,
  type StepScript,
  scriptedRunner,
  silentLogger,
  withNodes,
} from "./engine-fixture.ts";

/** The test plans' steps, played by a script: the server prints its token, agents fail as told. */
function k3sScript(options: { failOnce?: string; failAlways?: string; hang?: boolean } = {}) {
  const joins = new Map<string, string>();
  const script = (node: { name: string }, step: StepSpec, _index: number, call: number): StepScript => {
    if (options.hang) return "hang";
    if (step.name === "print the node token")
      return { output: `corral-token: K10${node.name}::server:s3cret\n` };
    if (step.name === "record the join" && step.kind === "file") joins.set(node.name, step.file.content);
    if (step.name === "start the agent") {
      if (node.name === options.failAlways) return { fail: `${node.name} cannot start` };
      if (node.name === options.failOnce && call === 1) return { fail: `${node.name} fails its first try` };
    }
    return {};
  };
  return { script, joins };
}

function managerOf(f: EngineFixture, runner: NodeStepRunner) {
  const engine = dispatcherOf(f, planSource(Object.values(testPlans)), runner);
  const manager = new ClusterManager({
    store: f.store,
    registry: f.registry,
    health: new NodeHealthBook(f.store, f.clock),
    engine,
    clock: f.clock,
    logger: silentLogger,
    pollMs: 2,
  });
  return {
    engine,
    manager,
    async close() {
      await manager.close();
      await engine.close();
    },
  };
}

/**
 * Waits (bounded) until the cluster's operation is over. The manager polls its jobs with an unref'd timer,
 * so this loop's own timer is what keeps the test's process alive meanwhile.
 */
async function settledView(manager: ClusterManager, name: string): Promise<ClusterView> {
  const deadline = Date.now() + 10_000;
  for (;;) {
    const view = await manager.get(name);
    if (!view.busy && view.record.state !== "provisioning" && view.record.state !== "deprovisioning")
      return view;
    if (Date.now() > deadline)
      assert.fail(`cluster ${name} did not settle: ${view.record.state} ${view.record.message}`);
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
}

const create = (manager: ClusterManager, agents: string[], parameters: Record<string, string> = {}) =>
  manager.create({
    name: "edge",
    server: "srv",
    agents,
    plans: testClusterPlans,
    parameters: { dir: "/tmp/k3s", ...parameters },
    serverUrl: "",
    agentConcurrency: 2,
  });

const membersOf = (view: ClusterView) => view.members.map((m) => [m.nodeName, m.role, m.state]);

describe("ClusterManager (constructed directly over an in-memory store and a real dispatcher)", () => {
  it("provisions the server first, hands its token to the agents, retries a failed agent: ready", async () => {
    await using f = await withNodes(["srv", "ag-1", "ag-2"]);
    const { script, joins } = k3sScript({ failOnce: "ag-2" });
    const { runner, calls } = scriptedRunner(script);
    const m = managerOf(f, runner);
    const created = await create(m.manager, ["ag-1", "ag-2"]);
    assert.equal(created.record.state, "new");
    assert.deepEqual(membersOf(created), [
      ["srv", "server", "pending"],
      ["ag-1", "agent", "pending"],
      ["ag-2", "agent", "pending"],
    ]);
    assert.equal((await m.manager.provision("edge", "tester")).record.state, "provisioning");

    const view = await settledView(m.manager, "edge");
    assert.equal(view.record.state, "ready", view.record.message);
    assert.deepEqual(membersOf(view), [
      ["srv", "server", "provisioned"],
      ["ag-1", "agent", "provisioned"],
      ["ag-2", "agent", "provisioned"],
    ]);
    assert.equal(view.members.find((x) => x.nodeName === "ag-2")?.attempts, 2, "ag-2 ran twice");
    assert.ok(view.hasJoinToken);
    assert.equal(view.healthyMembers, 3);
    assert.equal(calls[0]?.node, "srv", "the server goes first");
    for (const agent of ["ag-1", "ag-2"])
      assert.match(joins.get(agent) ?? "", /server=https:\/\/10\.0\.0\.1:6443\ntoken=K10srv::server:s3cret/);

    const serverJob = view.record.jobs.find((j) => j.phase === "server");
    assert.ok(serverJob !== undefined);
    const job = await m.engine.getJob(serverJob.jobId);
    const printed = job.nodes[0]?.steps.map((s) => s.output).join("");
    assert.equal(printed, "corral-token: ***\n", "the stored job output hides the token");
    await m.close();
  });

  it("an agent that keeps failing is rolled back and the cluster fails, naming it", async () => {
    await using f = await withNodes(["srv", "ag-1", "ag-2"]);
    const { runner, calls } = scriptedRunner(k3sScript({ failAlways: "ag-2" }).script);
    const m = managerOf(f, runner);
    await create(m.manager, ["ag-1", "ag-2"]);
    await m.manager.provision("edge", "tester");
    const view = await settledView(m.manager, "edge");
    assert.equal(view.record.state, "failed");
    assert.match(view.record.message, /ag-2 \(rolled-back\)/);
    assert.deepEqual(membersOf(view), [
      ["srv", "server", "provisioned"],
      ["ag-1", "agent", "provisioned"],
      ["ag-2", "agent", "rolled-back"],
    ]);
    const uninstalls = calls
      .filter((c) => c.steps.includes("remove what the agent wrote"))
      .map((c) => c.node);
    assert.deepEqual(uninstalls, ["ag-2"], "the rollback plan ran on the failed agent only");
    await m.close();
  });

  it("deprovisions agents first, then the server; then the cluster can be deleted", async () => {
    await using f = await withNodes(["srv", "ag-1"]);
    const { runner, calls } = scriptedRunner(k3sScript().script);
    const m = managerOf(f, runner);
    await create(m.manager, ["ag-1"]);
    await m.manager.provision("edge", "tester");
    assert.equal((await settledView(m.manager, "edge")).record.state, "ready");
    await rejectsWith(m.manager.delete("edge", false), "FAILED_PRECONDITION", "deprovision it first");

    const before = calls.length;
    await m.manager.deprovision("edge", "tester");
    const view = await settledView(m.manager, "edge");
    assert.equal(view.record.state, "deprovisioned", view.record.message);
    assert.equal(view.hasJoinToken, false);
    assert.deepEqual(
      calls.slice(before).map((c) => c.node),
      ["ag-1", "srv"],
    );
    await m.manager.delete("edge", false);
    assert.deepEqual(await m.manager.list(), []);
    await m.close();
  });

  it("refuses what it cannot do and changes nothing", async () => {
    await using f = await withNodes(["srv", "ag-1"]);
    const { runner } = scriptedRunner(k3sScript({ hang: true }).script);
    const m = managerOf(f, runner);
    await rejectsWith(create(m.manager, ["nope"]), "NOT_FOUND", "nope");
    await rejectsWith(create(m.manager, ["ag-1"], { token: "mine" }), "INVALID_ARGUMENT", "token");
    assert.deepEqual(await m.manager.list(), []);
    await create(m.manager, ["ag-1"]);
    await rejectsWith(create(m.manager, []), "ALREADY_EXISTS", "edge");
    await m.manager.provision("edge", "tester");
    await rejectsWith(m.manager.provision("edge", "tester"), "FAILED_PRECONDITION", "busy");
    await rejectsWith(m.manager.addNodes("edge", ["ag-1"], "agent"), "FAILED_PRECONDITION", "busy");
    await m.close();
  });

  it("a rollout cut off by a stop is failed, and a new manager's start closes the books of one left busy", async () => {
    await using f = await withNodes(["srv", "ag-1"]);
    const first = managerOf(f, scriptedRunner(k3sScript({ hang: true }).script).runner);
    await create(first.manager, ["ag-1"]);
    await first.manager.provision("edge", "tester");
    // A second controller over the same store starts while the first is mid-rollout (it died, as far as
    // the record can tell): the record says provisioning, so start() marks it failed.
    const second = managerOf(f, scriptedRunner(k3sScript().script).runner);
    await second.manager.start();
    const seen = await second.manager.get("edge");
    assert.equal(seen.record.state, "failed");
    assert.match(seen.record.message, /provisioning interrupted by a controller stop/);
    await first.close();
    const after = await second.manager.get("edge");
    assert.equal(after.record.state, "failed");
    assert.ok(
      after.members.every((x) => x.state !== "provisioning"),
      JSON.stringify(membersOf(after)),
    );
    await second.close();
  });
});
