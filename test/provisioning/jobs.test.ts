import assert from "node:assert/strict";
import { mkdir, readdir, readFile, stat, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { toJson } from "@bufbuild/protobuf";
import { type Timestamp, timestampMs } from "@bufbuild/protobuf/wkt";
import { Code, ConnectError, createClient } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import {
  type JobNode,
  JobSchema,
  ProvisioningAgentService,
  RunStatus,
  StepStatus,
  type WatchJobResponse,
} from "../../src/gen/corral/v1/provisioning_pb.ts";
import { ControlPlane as PiControlPlane } from "../../src/gen/picontroller_pb.ts";
import { eventually } from "../helpers/agent.ts";
import { plaintextClient } from "../helpers/clients.ts";
import { jobFinished, nodeOf, type ProvisioningCluster, startProvisioningCluster } from "./fixture.ts";

const codeOf = (error: unknown) => (error instanceof ConnectError ? error.code : undefined);

/**
 * Three harmless steps on each node, in a temp dir: write a file, list an input the test provides per
 * node (missing for one node, so that step fails there), wait for the written file.
 */
const threeStepPlan = `
name: three-steps
version: 1.0.0
description: a file, a command and a wait, all under temp dirs
parameters:
  work: { required: true, pattern: "/[A-Za-z0-9._/-]+" }
  inputs: { required: true, pattern: "/[A-Za-z0-9._/-]+" }
steps:
  - name: write marker
    file:
      path: "{{work}}/{{node.name}}/marker.txt"
      content: "provisioned {{node.name}} by job {{job.id}}\\n"
      mode: "0640"
  - name: check input
    exec: [ls, -l, "{{inputs}}/{{node.name}}.ready"]
  - name: wait for marker
    waitFor: { file: "{{work}}/{{node.name}}/marker.txt", timeout: 5s, interval: 100ms }
`;

/** A sleep whose argument no other process on the machine has, so the test can look for it in /proc. */
const sleepArg = `${30 + (process.pid % 1000) / 1000}`;
const slowPlan = `
name: slow
version: "1"
steps:
  - name: sleep
    exec: [sleep, "${sleepArg}"]
  - name: never
    exec: ["true"]
`;

describe("provisioning jobs on two real agents", () => {
  let cluster: ProvisioningCluster;
  let work: string;
  let inputs: string;
  before(async () => {
    cluster = await startProvisioningCluster(["node-a", "node-b"]);
    work = join(cluster.scratch, "work");
    inputs = join(cluster.scratch, "inputs");
    await mkdir(inputs);
    await writeFile(join(inputs, "node-a.ready"), "ok\n");
    await cluster.writePlan("three-steps.yaml", threeStepPlan);
    await cluster.writePlan("slow.yaml", slowPlan);
  });
  after(() => cluster.close());

  let firstJob = "";

  it("runs the plan on both nodes, records every step's status and output, and fails where the input is missing", async () => {
    const client = cluster.client();
    const { job: created } = await client.runPlan({
      plan: "three-steps",
      nodes: ["node-a", "node-b"],
      parameters: { work, inputs },
    });
    assert.ok(created);
    firstJob = created.id;
    assert.equal(created.nodes.length, 2);

    // Follow it as `corral provision logs -f` does: a snapshot, then changes, ending when the job does.
    const events: WatchJobResponse[] = [];
    for await (const message of client.watchJob({ jobId: created.id }, { timeoutMs: 20_000 }))
      events.push(message);
    assert.equal(events[0]?.event.case, "snapshot");
    const last = events.at(-1)?.event;
    assert.equal(last?.case, "job");
    assert.equal(last?.case === "job" ? last.value.status : undefined, RunStatus.FAILED);
    const streamedOutput = events
      .flatMap((e) =>
        e.event.case === "step" && e.event.value.nodeName === "node-b" ? [e.event.value.outputAppended] : [],
      )
      .join("");
    assert.match(streamedOutput, /node-b\.ready/, "the failing command's output was streamed");

    const job = await jobFinished(client, created.id);
    assert.equal(job.status, RunStatus.FAILED);
    const a = nodeOf(job, "node-a");
    const b = nodeOf(job, "node-b");
    assert.equal(a.status, RunStatus.SUCCEEDED);
    assert.deepEqual(
      a.steps.map((s) => s.status),
      [StepStatus.SUCCEEDED, StepStatus.SUCCEEDED, StepStatus.SUCCEEDED],
    );
    assert.match(a.steps[1]?.output ?? "", /node-a\.ready/, "ls printed the input it found");
    assert.equal(a.steps[1]?.exitCode, 0);
    assert.ok(
      a.steps.every((s) => s.startedAt !== undefined && s.finishedAt !== undefined),
      "steps have timestamps",
    );

    assert.equal(b.status, RunStatus.FAILED);
    assert.deepEqual(
      b.steps.map((s) => s.status),
      [StepStatus.SUCCEEDED, StepStatus.FAILED, StepStatus.SKIPPED],
    );
    assert.notEqual(b.steps[1]?.exitCode, 0);
    assert.match(b.steps[1]?.output ?? "", /node-b\.ready.*No such file/s);
    assert.match(b.steps[1]?.message ?? "", /exit code \d+/);
    assert.match(b.steps[2]?.message ?? "", /not run: step 2 failed/);
    assert.match(b.message, /step 2 \("check input"\) failed/);

    // The file steps really wrote, with the content and mode of the plan.
    const marker = join(work, "node-b", "marker.txt");
    assert.equal(await readFile(marker, "utf8"), `provisioned node-b by job ${job.id}\n`);
    assert.equal((await stat(marker)).mode & 0o777, 0o640);
  });

  it("retries only the failed node once the cause is fixed", async () => {
    const client = cluster.client();
    const before = await jobFinished(client, firstJob);
    const aBefore = nodeOf(before, "node-a");
    await writeFile(join(inputs, "node-b.ready"), "ok\n");

    const { job: retried } = await client.retryJob({ jobId: firstJob });
    assert.equal(retried?.attempt, 2);
    const job = await jobFinished(client, firstJob);
    assert.equal(job.status, RunStatus.SUCCEEDED, job.message);
    const a = nodeOf(job, "node-a");
    const b = nodeOf(job, "node-b");
    assert.equal(a.attempt, 1, "node-a was not run again");
    assert.deepEqual(a.startedAt, aBefore.startedAt);
    assert.equal(b.attempt, 2);
    assert.equal(b.status, RunStatus.SUCCEEDED);
    assert.deepEqual(
      b.steps.map((s) => s.status),
      [StepStatus.UNCHANGED, StepStatus.SUCCEEDED, StepStatus.SUCCEEDED],
      "the marker was already written by the first attempt",
    );
    await assert.rejects(client.retryJob({ jobId: firstJob }), (e) => codeOf(e) === Code.FailedPrecondition);
  });

  it("re-running a finished plan is idempotent: the file steps report unchanged", async () => {
    const client = cluster.client();
    const markerA = join(work, "node-a", "marker.txt");
    const before = await stat(markerA);
    // The same job id keeps the content the same: run it with the content of job 1 via a plan that
    // does not mention the job id.
    await cluster.writePlan(
      "three-steps-stable.yaml",
      threeStepPlan
        .replace("name: three-steps", "name: three-steps-stable")
        .replace(" by job {{job.id}}", ""),
    );
    const first = await client.runPlan({
      plan: "three-steps-stable",
      all: true,
      parameters: { work, inputs },
    });
    assert.equal((await jobFinished(client, first.job?.id ?? "")).status, RunStatus.SUCCEEDED);
    const { job: again } = await client.runPlan({
      plan: "three-steps-stable",
      all: true,
      parameters: { work, inputs },
    });
    const job = await jobFinished(client, again?.id ?? "");
    assert.equal(job.status, RunStatus.SUCCEEDED);
    assert.deepEqual(
      job.nodes.map((n) => n.nodeName).sort(),
      ["node-a", "node-b"],
      "--all reaches every ready agent (not the controller)",
    );
    for (const node of job.nodes) {
      assert.equal(
        node.steps[0]?.status,
        StepStatus.UNCHANGED,
        `${node.nodeName}: ${node.steps[0]?.message}`,
      );
      assert.match(node.steps[0]?.message ?? "", /already as wanted/);
    }
    assert.ok((await stat(markerA)).mtimeMs >= before.mtimeMs);
  });

  it("a dry run validates and describes every step, and runs nothing", async () => {
    const client = cluster.client();
    const untouched = join(cluster.scratch, "dry");
    const { job } = await client.runPlan({
      plan: "three-steps",
      nodes: ["node-a"],
      parameters: { work: untouched, inputs },
      dryRun: true,
    });
    assert.ok(job);
    assert.equal(job.dryRun, true);
    assert.equal(job.status, RunStatus.SUCCEEDED);
    const steps = nodeOf(job, "node-a").steps;
    assert.deepEqual(
      steps.map((s) => s.status),
      [StepStatus.SKIPPED, StepStatus.SKIPPED, StepStatus.SKIPPED],
    );
    assert.match(
      steps[0]?.message ?? "",
      new RegExp(`^dry run: would write ${untouched}/node-a/marker\\.txt`),
    );
    assert.match(steps[1]?.message ?? "", /would run `ls -l .*node-a\.ready`/);
    await assert.rejects(stat(untouched), /ENOENT/, "nothing was written");
    // A bad parameter is refused by a dry run too.
    await assert.rejects(
      client.runPlan({
        plan: "three-steps",
        nodes: ["node-a"],
        parameters: { work: "relative/dir", inputs },
        dryRun: true,
      }),
      (e) => codeOf(e) === Code.InvalidArgument && /parameters\.work/.test(String(e)),
    );
  });

  it("keeps secret parameters out of job records and step descriptions, yet hands them to the node", async () => {
    await cluster.writePlan(
      "secret.yaml",
      `name: secret
version: "1"
parameters:
  dir: { required: true }
  token: { required: true, secret: true, pattern: "[A-Za-z0-9]{16,}" }
steps:
  - file: { path: "{{dir}}/{{node.name}}.conf", content: "token={{token}}\\n", mode: "0600" }
  - exec: [test, -n, "{{token}}"]
`,
    );
    const token = "s3cretS3cretS3cret42";
    const dir = join(cluster.scratch, "secret");
    const client = cluster.client();
    const { job: created } = await client.runPlan({
      plan: "secret",
      nodes: ["node-a"],
      parameters: { dir, token },
    });
    const job = await jobFinished(client, created?.id ?? "");
    assert.equal(job.status, RunStatus.SUCCEEDED, job.message);
    assert.equal(job.parameters.token, "***");
    assert.equal(nodeOf(job, "node-a").steps[1]?.description, "run `test -n ***`");
    assert.ok(
      !JSON.stringify(toJson(JobSchema, job)).includes(token),
      "the token appears nowhere in the job",
    );
    assert.equal(
      await readFile(join(dir, "node-a.conf"), "utf8"),
      `token=${token}\n`,
      "the node got the real value",
    );

    const pi = plaintextClient(PiControlPlane, cluster.controller.bridgePort);
    const dry = await pi.requestProvisioning({
      nodeId: "node-b",
      plan: "secret",
      parameters: { dir, token },
      dryRun: true,
    });
    assert.ok(!JSON.stringify(dry.steps).includes(token));
  });

  it("lets only the controller (and admins) run steps on an agent: another node is refused", async () => {
    const [a, b] = cluster.agents;
    assert.ok(a && b);
    const [cert, key] = await Promise.all(
      ["node.crt", "node.key"].map((f) => readFile(join(b.dataDir, f), "utf8")),
    );
    const direct = createClient(
      ProvisioningAgentService,
      createGrpcTransport({
        baseUrl: `https://${a.agent.listenAddress}`,
        nodeOptions: { ca: cluster.controller.controller.ca.certificatePem, cert, key },
      }),
    );
    const steps = [{ name: "x", kind: { case: "exec" as const, value: { argv: ["true"] } } }];
    await assert.rejects(
      (async () => {
        for await (const _ of direct.runSteps({ jobId: "1", steps }))
          assert.fail("a node ran steps on another node");
      })(),
      (e) => codeOf(e) === Code.PermissionDenied,
    );
  });

  it("refuses bad requests with the reason", async () => {
    const client = cluster.client();
    const refused = async (request: Parameters<typeof client.runPlan>[0], code: Code, text: RegExp) =>
      assert.rejects(client.runPlan(request), (e) => codeOf(e) === code && text.test(String(e)));
    await refused({ plan: "nope", all: true }, Code.NotFound, /no plan "nope"/);
    await refused(
      { plan: "three-steps", all: true, parameters: { work } },
      Code.InvalidArgument,
      /inputs: is required/,
    );
    await refused(
      { plan: "three-steps", all: true, parameters: { work, inputs, extra: "x" } },
      Code.InvalidArgument,
      /no parameter "extra"/,
    );
    await refused(
      { plan: "three-steps", all: true, parameters: { work: `${work}\nX`, inputs } },
      Code.InvalidArgument,
      /line break/,
    );
    await refused(
      { plan: "three-steps", parameters: { work, inputs } },
      Code.InvalidArgument,
      /exactly one of/,
    );
    await refused(
      { plan: "three-steps", nodes: ["ghost"], parameters: { work, inputs } },
      Code.NotFound,
      /ghost/,
    );
    await refused(
      { plan: "three-steps", selector: { rack: "9" }, parameters: { work, inputs } },
      Code.FailedPrecondition,
      /no ready agent carries rack=9/,
    );
  });

  it("cancelling a job kills the running step and records it", async () => {
    const client = cluster.client();
    const { job } = await client.runPlan({ plan: "slow", nodes: ["node-a"] });
    const id = job?.id ?? "";
    await jobRunningStep(client, id);
    await eventually(async () => ((await sleepers()) === 1 ? true : undefined), 10_000, "the sleep to run");
    const started = Date.now();
    const { job: cancelled } = await client.cancelJob({ jobId: id });
    assert.ok(Date.now() - started < 10_000, "cancel did not wait for the 30 s sleep");
    assert.equal(cancelled?.status, RunStatus.CANCELLED);
    const node = nodeOf(cancelled ?? job ?? (() => assert.fail())(), "node-a");
    assert.equal(node.status, RunStatus.CANCELLED);
    assert.equal(node.steps[0]?.status, StepStatus.FAILED);
    assert.equal(node.steps[1]?.status, StepStatus.SKIPPED);
    await eventually(
      async () => ((await sleepers()) === 0 ? true : undefined),
      10_000,
      "the sleep to be killed",
    );
  });

  it("serves RequestProvisioning (Pi-Controller) on the same engine: a node, or every node of the cluster", async () => {
    const pi = plaintextClient(PiControlPlane, cluster.controller.bridgePort);
    const one = await pi.requestProvisioning({
      nodeId: "node-a",
      plan: "three-steps",
      parameters: { work, inputs },
    });
    assert.ok(one.jobId !== "");
    assert.ok(["queued", "running"].includes(one.status), one.status);
    assert.equal(one.steps.length, 3);
    assert.ok(one.steps.every((s) => s.nodeId !== "" && s.name !== ""));
    const job = await jobFinished(cluster.client(), one.jobId);
    assert.equal(job.status, RunStatus.SUCCEEDED);

    const clusterId = cluster.controller.controller.context.facts.clusterId;
    const all = await pi.requestProvisioning({
      clusterId,
      plan: "three-steps",
      parameters: { work, inputs },
      dryRun: true,
    });
    assert.equal(all.status, "succeeded");
    assert.equal(all.steps.length, 6, "three steps on each of the two agents");
    assert.ok(all.steps.every((s) => s.status === "skipped" && /^dry run: would/.test(s.message)));
    await assert.rejects(
      pi.requestProvisioning({
        clusterId: "another-cluster",
        plan: "three-steps",
        parameters: { work, inputs },
      }),
      (e) => codeOf(e) === Code.NotFound,
    );
    await assert.rejects(
      pi.requestProvisioning({ plan: "three-steps" }),
      (e) => codeOf(e) === Code.InvalidArgument,
    );
  });

  it("runs at most `concurrency` nodes at once, and one job at a time per node", async () => {
    await cluster.writePlan(
      "nap.yaml",
      'name: nap\nversion: "1"\nsteps: [{ name: nap, exec: [sleep, "0.6"] }]\n',
    );
    const client = cluster.client();
    const ms = (t: Timestamp | undefined) => (t === undefined ? 0 : timestampMs(t));
    const interval = (node: JobNode) => [ms(node.startedAt), ms(node.finishedAt)];
    const overlaps = (a: number[], b: number[]) => (a[0] ?? 0) < (b[1] ?? 0) && (b[0] ?? 0) < (a[1] ?? 0);

    const one = await client.runPlan({ plan: "nap", all: true, concurrency: 1 });
    const serial = await jobFinished(client, one.job?.id ?? "");
    assert.equal(serial.status, RunStatus.SUCCEEDED, serial.message);
    assert.ok(
      !overlaps(interval(nodeOf(serial, "node-a")), interval(nodeOf(serial, "node-b"))),
      "one node at a time",
    );

    const two = await client.runPlan({ plan: "nap", all: true, concurrency: 2 });
    const parallel = await jobFinished(client, two.job?.id ?? "");
    assert.ok(
      overlaps(interval(nodeOf(parallel, "node-a")), interval(nodeOf(parallel, "node-b"))),
      "both at once",
    );

    // Two jobs for the same node: the second waits (queued) for the first instead of being refused by the agent.
    const first = await client.runPlan({ plan: "nap", nodes: ["node-a"] });
    const second = await client.runPlan({ plan: "nap", nodes: ["node-a"] });
    const [a, b] = await Promise.all([
      jobFinished(client, first.job?.id ?? ""),
      jobFinished(client, second.job?.id ?? ""),
    ]);
    assert.equal(a.status, RunStatus.SUCCEEDED, a.message);
    assert.equal(b.status, RunStatus.SUCCEEDED, b.message);
    assert.ok(!overlaps(interval(nodeOf(a, "node-a")), interval(nodeOf(b, "node-a"))));
    await assert.rejects(
      client.runPlan({ plan: "nap", all: true, concurrency: 65 }),
      (e) => codeOf(e) === Code.InvalidArgument,
    );
  });

  it("cancelling a job whose node waits for another job stops it before it starts", async () => {
    const client = cluster.client();
    const { job: busy } = await client.runPlan({ plan: "slow", nodes: ["node-a"] });
    await jobRunningStep(client, busy?.id ?? "");
    const { job: waiting } = await client.runPlan({ plan: "nap", nodes: ["node-a"] });
    const queued = await client.getJob({ jobId: waiting?.id ?? "" });
    assert.equal(queued.job?.nodes[0]?.status, RunStatus.QUEUED, "waits for the node");
    const { job: cancelled } = await client.cancelJob({ jobId: waiting?.id ?? "" });
    assert.equal(cancelled?.status, RunStatus.CANCELLED);
    assert.match(cancelled?.nodes[0]?.message ?? "", /^cancelled by .* before this node started$/);
    assert.equal(cancelled?.nodes[0]?.steps[0]?.status, StepStatus.SKIPPED);
    const still = await client.getJob({ jobId: busy?.id ?? "" });
    assert.equal(still.job?.status, RunStatus.RUNNING, "the other job was not disturbed");
    await client.cancelJob({ jobId: busy?.id ?? "" });
    await eventually(
      async () => ((await sleepers()) === 0 ? true : undefined),
      10_000,
      "the sleep to be killed",
    );
  });

  it("keeps jobs across a controller restart, and marks a job cut off by the stop as interrupted", async () => {
    const client = cluster.client();
    const { job: slow } = await client.runPlan({ plan: "slow", nodes: ["node-b"] });
    await jobRunningStep(client, slow?.id ?? "");
    const before = await jobFinished(client, firstJob);

    await cluster.restart();
    const after = cluster.client();
    const kept = await jobFinished(after, firstJob);
    assert.deepEqual(
      kept.nodes.map((n) => [n.nodeName, n.status, n.attempt, n.steps.map((s) => [s.status, s.output])]),
      before.nodes.map((n) => [n.nodeName, n.status, n.attempt, n.steps.map((s) => [s.status, s.output])]),
    );
    const cut = await jobFinished(after, slow?.id ?? "");
    assert.equal(cut.status, RunStatus.FAILED);
    assert.match(nodeOf(cut, "node-b").message, /interrupted/);
    // The old controller's call was cut when it stopped, so the agent killed the step.
    await eventually(
      async () => ((await sleepers()) === 0 ? true : undefined),
      10_000,
      "the sleep to be killed",
    );
    const { jobs } = await after.listJobs({});
    assert.ok(jobs.some((j) => j.id === firstJob));
    assert.equal(jobs[0]?.id, cut.id, "newest first");
  });
});

/** Processes running `sleep <sleepArg>`. */
async function sleepers(): Promise<number> {
  let count = 0;
  for (const pid of await readdir("/proc")) {
    if (!/^\d+$/.test(pid)) continue;
    const cmdline = await readFile(`/proc/${pid}/cmdline`, "utf8").catch(() => "");
    if (cmdline === `sleep\0${sleepArg}\0`) count++;
  }
  return count;
}

/** Waits until the job's first step runs on some node. */
async function jobRunningStep(
  client: ReturnType<ProvisioningCluster["client"]>,
  jobId: string,
): Promise<void> {
  const deadline = Date.now() + 15_000;
  while (Date.now() < deadline) {
    const { job } = await client.getJob({ jobId });
    if (job?.nodes.some((n) => n.steps[0]?.status === StepStatus.RUNNING)) return;
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  assert.fail(`job ${jobId} did not start its first step`);
}
