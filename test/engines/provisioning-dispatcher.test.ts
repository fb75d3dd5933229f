import assert from "node:assert/strict";
import { describe, it } from "node:test";
import type { RunPlanInput } from "../../src/core/provisioning/provisioning-engine.ts";
import { decodeJob, jobKey, jobSequenceKey } from "../../src/core/provisioning/provisioning-job.ts";
import { rejectsWith } from "../core/core-fixture.ts";
import {
  dispatcherOf,
  historyOf,
  planSource,
  type StepScript,
  scriptedRunner,
  withNodes,
} from "./engine-fixture.ts";

const greet = `name: greet
version: 1
parameters:
  who: { required: true, pattern: "[a-z]+" }
  key: { default: "sesame", secret: true, pattern: "[a-z]+" }
steps:
  - name: say hello
    exec: [echo, "hello {{who}} on {{node.name}}"]
  - name: use the key
    exec: [echo, "{{key}}"]
`;

const run = (input: Partial<RunPlanInput>): RunPlanInput => ({
  plan: "greet",
  nodes: [],
  all: false,
  selector: {},
  parameters: { who: "world" },
  dryRun: false,
  concurrency: 0,
  createdBy: "tester",
  ...input,
});

describe("ProvisioningDispatcher (constructed directly over an in-memory store)", () => {
  it("a job moves queued → running → succeeded, and each node's steps and output are written", async () => {
    await using f = await withNodes(["pi-1", "pi-2"]);
    const { runner, calls } = scriptedRunner((node, _step, index) =>
      index === 0 ? { output: `hello world on ${node.name}\n` } : {},
    );
    const dispatcher = dispatcherOf(f, planSource([greet]), runner);
    await dispatcher.start();
    const created = await dispatcher.runPlan(run({ nodes: ["pi-1", "pi-2"] }));
    const id = created.job.id;
    assert.equal(created.job.plan, "greet");
    assert.deepEqual(
      created.job.parameters,
      { who: "world", key: "***" },
      "secrets are masked in the record",
    );

    const statuses = (await historyOf(f.store, jobKey(id), (v) => decodeJob(v).finishedAt !== undefined)).map(
      (v) => decodeJob(v).status,
    );
    assert.deepEqual(statuses, ["queued", "running", "succeeded"]);
    const done = await dispatcher.getJob(id);
    assert.equal(done.job.status, "succeeded", done.job.message);
    assert.deepEqual(
      done.nodes.map((n) => [n.nodeName, n.status, n.steps.map((s) => s.status)]),
      [
        ["pi-1", "succeeded", ["succeeded", "succeeded"]],
        ["pi-2", "succeeded", ["succeeded", "succeeded"]],
      ],
    );
    assert.equal(done.nodes[0]?.steps[0]?.output, "hello world on pi-1\n");
    assert.ok(
      done.nodes.every(
        (n) => n.steps[1]?.description.includes("***") && !n.steps[1].description.includes("sesame"),
      ),
      "a step's description shows the secret masked",
    );
    assert.deepEqual(calls.map((c) => c.node).sort(), ["pi-1", "pi-2"]);
    await dispatcher.close();
  });

  it("a failed step fails its node and the job; a retry runs only the failed node and succeeds", async () => {
    await using f = await withNodes(["pi-1", "pi-2"]);
    const { runner, calls } = scriptedRunner(
      (node, _step, index, call): StepScript =>
        node.name === "pi-2" && index === 1 && call === 1 ? { fail: "exit status 1" } : {},
    );
    const dispatcher = dispatcherOf(f, planSource([greet]), runner);
    await dispatcher.start();
    const { job } = await dispatcher.runPlan(run({ nodes: ["pi-1", "pi-2"] }));
    await historyOf(f.store, jobKey(job.id), (v) => decodeJob(v).finishedAt !== undefined);
    const failed = await dispatcher.getJob(job.id);
    assert.equal(failed.job.status, "failed");
    const pi2 = failed.nodes.find((n) => n.nodeName === "pi-2");
    assert.deepEqual(
      pi2?.steps.map((s) => s.status),
      ["succeeded", "failed"],
    );
    assert.equal(pi2?.steps[1]?.message, "exit status 1");

    await dispatcher.retryJob(job.id, "tester");
    await historyOf(
      f.store,
      jobKey(job.id),
      (v) => decodeJob(v).attempt === 2 && decodeJob(v).finishedAt !== undefined,
    );
    const retried = await dispatcher.getJob(job.id);
    assert.equal(retried.job.status, "succeeded", retried.job.message);
    assert.equal(retried.job.attempt, 2);
    assert.equal(calls.filter((c) => c.node === "pi-2").length, 2, "pi-2 ran twice");
    assert.equal(calls.filter((c) => c.node === "pi-1").length, 1, "pi-1 was not run again");
    await dispatcher.close();
  });

  it("cancelling a running job stops its nodes and records who cancelled", async () => {
    await using f = await withNodes(["pi-1"]);
    const { runner } = scriptedRunner(() => "hang");
    const dispatcher = dispatcherOf(f, planSource([greet]), runner);
    const { job } = await dispatcher.runPlan(run({ nodes: ["pi-1"] }));
    await historyOf(f.store, jobKey(job.id), (v) => decodeJob(v).status === "running");
    const cancelled = await dispatcher.cancelJob(job.id, "alice");
    assert.equal(cancelled.job.status, "cancelled");
    assert.equal(cancelled.nodes[0]?.status, "cancelled");
    assert.match(cancelled.nodes[0]?.message ?? "", /cancelled by alice/);
    await rejectsWith(dispatcher.cancelJob(job.id, "alice"), "FAILED_PRECONDITION", "nothing to cancel");
    await dispatcher.close();
  });

  it("a job cut off by a stop is marked failed (interrupted) by the next dispatcher over the store", async () => {
    await using f = await withNodes(["pi-1"]);
    const first = dispatcherOf(f, planSource([greet]), scriptedRunner(() => "hang").runner);
    const { job } = await first.runPlan(run({ nodes: ["pi-1"] }));
    await historyOf(f.store, jobKey(job.id), (v) => decodeJob(v).status === "running");
    await first.close();
    const stopped = await first.getJob(job.id);
    assert.equal(stopped.job.status, "failed");
    assert.match(stopped.nodes[0]?.message ?? "", /interrupted/);
    await rejectsWith(first.runPlan(run({ nodes: ["pi-1"] })), "UNAVAILABLE", "shutting down");

    const next = dispatcherOf(f, planSource([greet]), scriptedRunner(() => ({})).runner);
    await next.start();
    const retried = await next.retryJob(job.id, "tester");
    assert.equal(retried.job.attempt, 2);
    await historyOf(
      f.store,
      jobKey(job.id),
      (v) => decodeJob(v).attempt === 2 && decodeJob(v).finishedAt !== undefined,
    );
    assert.equal((await next.getJob(job.id)).job.status, "succeeded");
    await next.close();
  });

  it("refuses a request it cannot run, and writes nothing for it", async () => {
    await using f = await withNodes(["pi-1"]);
    await f.registry.register({ id: "id-off", name: "off", address: "10.0.0.9", port: 7444, status: "down" });
    const dispatcher = dispatcherOf(f, planSource([greet]), scriptedRunner(() => ({})).runner);
    await rejectsWith(dispatcher.runPlan(run({ nodes: ["nope"] })), "NOT_FOUND", "nope");
    await rejectsWith(dispatcher.runPlan(run({ nodes: ["off"] })), "FAILED_PRECONDITION", "off is down");
    await rejectsWith(
      dispatcher.runPlan(run({ nodes: ["pi-1"], all: true })),
      "INVALID_ARGUMENT",
      "exactly one",
    );
    await rejectsWith(
      dispatcher.runPlan(run({ nodes: ["pi-1"], parameters: { who: "NOT lower" } })),
      "INVALID_ARGUMENT",
      "who",
    );
    await rejectsWith(
      dispatcher.runPlan(run({ selector: { zone: "mars" } })),
      "FAILED_PRECONDITION",
      "zone=mars",
    );
    assert.equal(await f.store.get(jobSequenceKey), undefined, "no job was created");
    await dispatcher.close();
  });

  it("a dry run records what each node would run, and runs nothing", async () => {
    await using f = await withNodes(["pi-1", "pi-2"]);
    const { runner, calls } = scriptedRunner(() => ({}));
    const dispatcher = dispatcherOf(f, planSource([greet]), runner);
    const view = await dispatcher.runPlan(run({ all: true, dryRun: true }));
    assert.equal(view.job.status, "succeeded");
    assert.equal(view.nodes.length, 2);
    assert.match(view.nodes[0]?.steps[0]?.description ?? "", /hello world on pi-1/);
    assert.deepEqual(calls, []);
    await dispatcher.close();
  });
});
