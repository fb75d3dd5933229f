import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { decodeClusterEvent } from "../../src/core/events/cluster-event.ts";
import {
  appendOutput,
  applyStepUpdate,
  decodeNodeRun,
  encodeJob,
  encodeNodeRun,
  encodeNodeRunWithin,
  finishNodeRun,
  type JobRecord,
  jobKey,
  jobStatusOf,
  nodeRunKey,
  parseJobId,
  queuedNodeRun,
  retryTargets,
  startNodeRun,
} from "../../src/core/provisioning/provisioning-job.ts";

const job: JobRecord = {
  id: "12",
  plan: "p",
  planVersion: "1",
  parameters: {},
  dryRun: false,
  concurrency: 4,
  targets: [
    { nodeId: "a", nodeName: "node-a" },
    { nodeId: "b", nodeName: "node-b" },
  ],
  steps: [
    { name: "one", kind: "file" },
    { name: "two", kind: "exec" },
    { name: "three", kind: "waitFor" },
  ],
  status: "running",
  message: "",
  createdBy: "test",
  createdAt: 1,
  attempt: 1,
};
const target = { nodeId: "a", nodeName: "node-a" };

describe("the job state machine", () => {
  it("moves steps pending → running → finished and refuses moves back", () => {
    const run = startNodeRun(job, target, undefined, ["write", "run", "wait"], 100);
    assert.equal(run.attempt, 1);
    assert.deepEqual(
      run.steps.map((s) => s.status),
      ["pending", "pending", "pending"],
    );
    assert.equal(applyStepUpdate(run, { index: 0, status: "running" }, 101, 1024).statusChanged, true);
    assert.equal(
      applyStepUpdate(run, { index: 0, status: "running", output: "hi " }, 102, 1024).statusChanged,
      false,
    );
    applyStepUpdate(run, { index: 0, status: "running", output: "there" }, 103, 1024);
    applyStepUpdate(run, { index: 0, status: "succeeded", message: "done", exitCode: 0 }, 104, 1024);
    const first = run.steps[0];
    assert.deepEqual(
      [first?.status, first?.output, first?.message, first?.startedAt, first?.finishedAt],
      ["succeeded", "hi there", "done", 101, 104],
    );
    assert.throws(
      () => applyStepUpdate(run, { index: 0, status: "running" }, 105, 1024),
      /from succeeded to running/,
    );
    assert.throws(
      () => applyStepUpdate(run, { index: 7, status: "running" }, 105, 1024),
      /step 8, but the plan has 3/,
    );
  });

  it("ends a node: a failed step fails it and the rest are skipped; running steps fail with the reason", () => {
    const run = startNodeRun(job, target, undefined, [], 100);
    applyStepUpdate(run, { index: 0, status: "unchanged" }, 101, 1024);
    applyStepUpdate(run, { index: 1, status: "running" }, 102, 1024);
    applyStepUpdate(run, { index: 1, status: "failed", message: "exit code 1" }, 103, 1024);
    const failed = finishNodeRun(run, 104);
    assert.equal(failed.status, "failed");
    assert.equal(failed.message, 'step 2 ("two") failed: exit code 1');
    assert.deepEqual(
      failed.steps.map((s) => [s.status, s.message]),
      [
        ["unchanged", ""],
        ["failed", "exit code 1"],
        ["skipped", "not run: step 2 failed"],
      ],
    );

    const cut = startNodeRun(job, target, failed, [], 200);
    assert.equal(cut.attempt, 2, "a retry is a new attempt with fresh steps");
    applyStepUpdate(cut, { index: 0, status: "running" }, 201, 1024);
    const interrupted = finishNodeRun(cut, 202, { status: "cancelled", message: "cancelled by alice" });
    assert.equal(interrupted.status, "cancelled");
    assert.deepEqual(
      interrupted.steps.map((s) => s.status),
      ["failed", "skipped", "skipped"],
    );
    assert.equal(interrupted.steps[0]?.message, "cancelled by alice");
    assert.equal(interrupted.steps[1]?.message, "not run: the job was cancelled");
  });

  it("caps output on a character boundary and marks it cut", () => {
    const step = queuedNodeRun(job, target).steps[0];
    assert.ok(step);
    appendOutput(step, "abc", 5);
    appendOutput(step, "dé", 5); // "é" is two bytes: only "d" fits
    assert.equal(step.output, "abcd");
    assert.equal(step.outputTruncated, true);
    appendOutput(step, "more", 5);
    assert.equal(step.output, "abcd");
  });

  it("keeps a node's record under the store's value limit by halving the largest outputs", () => {
    const run = startNodeRun(job, target, undefined, [], 1);
    for (const step of run.steps) {
      applyStepUpdate(
        run,
        { index: step.index, status: "running", output: "x".repeat(100_000) },
        2,
        1_000_000,
      );
    }
    const small = run.steps[2];
    assert.ok(small);
    small.output = "short";
    const text = encodeNodeRunWithin(run, 120_000);
    assert.ok(Buffer.byteLength(text) <= 120_000, `${Buffer.byteLength(text)} bytes`);
    assert.deepEqual(
      decodeNodeRun(text).steps.map((s) => s.outputTruncated),
      [true, true, false],
    );
    assert.equal(run.steps[2]?.output, "short", "the small output was left alone");
    appendOutput(run.steps[0] ?? assert.fail(), "more", 1_000_000);
    assert.ok(!(run.steps[0]?.output ?? "").endsWith("more"), "a cut output takes no more");
  });

  it("derives the job's status from its nodes; queued nodes keep it running", () => {
    const done = (nodeId: string, status: "succeeded" | "failed" | "cancelled") => ({
      ...queuedNodeRun(job, { nodeId, nodeName: nodeId }),
      status,
    });
    assert.equal(jobStatusOf(job, []), "queued");
    assert.equal(jobStatusOf(job, [done("a", "succeeded")]), "running");
    assert.equal(jobStatusOf(job, [done("a", "succeeded"), done("b", "succeeded")]), "succeeded");
    assert.equal(jobStatusOf(job, [done("a", "succeeded"), done("b", "failed")]), "failed");
    assert.equal(jobStatusOf(job, [done("a", "cancelled"), done("b", "succeeded")]), "cancelled");
  });

  it("retries only nodes that did not succeed, and only finished jobs", () => {
    const ok = { ...queuedNodeRun(job, job.targets[0] ?? target), status: "succeeded" as const };
    const bad = { ...queuedNodeRun(job, job.targets[1] ?? target), status: "failed" as const };
    assert.throws(() => retryTargets(job, [ok, bad]), /is running; retry it once it has finished/);
    const finished = { ...job, status: "failed" as const };
    assert.deepEqual(retryTargets(finished, [ok, bad]), [{ nodeId: "b", nodeName: "node-b" }]);
    assert.throws(
      () => retryTargets({ ...finished, status: "succeeded" }, [ok, { ...bad, status: "succeeded" }]),
      /nothing to retry/,
    );
    assert.throws(() => retryTargets({ ...finished, dryRun: true }, [ok, bad]), /dry run/);
  });

  it("job keys sort by id and come out of the event feed as provisioning events", () => {
    assert.ok(jobKey("9") < jobKey("10"));
    assert.equal(parseJobId("#0012"), "12");
    assert.throws(() => parseJobId("abc"), /not a job id/);
    const run = queuedNodeRun(job, target);
    const event = decodeClusterEvent({
      revision: 5,
      type: "put",
      key: nodeRunKey("12", "a"),
      value: encodeNodeRun(run),
    });
    assert.equal(event?.kind, "provisioning");
    assert.equal(event?.kind === "provisioning" && event.jobId, "12");
    assert.deepEqual(event?.kind === "provisioning" && event.run, decodeNodeRun(encodeNodeRun(run)));
    const jobEvent = decodeClusterEvent({
      revision: 6,
      type: "put",
      key: jobKey("12"),
      value: encodeJob(job),
    });
    assert.equal(jobEvent?.kind === "provisioning" && jobEvent.type, "provisioning.job.put");
    assert.equal(jobEvent?.kind === "provisioning" && jobEvent.job?.id, "12");
    assert.equal(
      decodeClusterEvent({ revision: 7, type: "put", key: "/provisioning-sequence", value: "3" }),
      undefined,
    );
  });
});
