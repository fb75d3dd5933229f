import assert from "node:assert/strict";
import { mkdir, readdir, readFile, symlink } from "node:fs/promises";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { Code, ConnectError } from "@connectrpc/connect";
import { RunStatus } from "../../src/gen/corral/v1/provisioning_pb.ts";
import { jobFinished, type ProvisioningCluster, startProvisioningCluster } from "./fixture.ts";

/**
 * A file step's path filled in from a parameter stays where the plan says — its declared `roots:`, or
 * the directory its literal path names — on the controller before anything runs, and on the node at
 * write time with symlinks followed. Parameters are checked against their declared pattern.
 */

const codeOf = (error: unknown) => (error instanceof ConnectError ? error.code : undefined);

describe("provisioning writes only in its place", () => {
  let cluster: ProvisioningCluster;
  let out: string;
  let elsewhere: string;

  before(async () => {
    cluster = await startProvisioningCluster(["p1"]);
    out = join(cluster.scratch, "out");
    elsewhere = join(cluster.scratch, "elsewhere");
    await mkdir(out);
    await mkdir(elsewhere);
    await symlink(elsewhere, join(out, "link"));
    await cluster.writePlan(
      "named.yaml",
      `name: named\nversion: 1\nparameters: { name: { required: true } }\nsteps:\n  - file: { path: "${out}/{{name}}.txt", content: "hi\\n", mode: "0644" }\n`,
    );
    await cluster.writePlan(
      "patterned.yaml",
      `name: patterned\nversion: 1\nparameters: { name: { required: true, pattern: "[a-z]+" } }\nsteps:\n  - file: { path: "${out}/{{name}}.txt", content: "hi\\n", mode: "0644" }\n`,
    );
    await cluster.writePlan(
      "linked.yaml",
      `name: linked\nversion: 1\nroots: ["${out}"]\nparameters: { name: { required: true, pattern: "[a-z]+" } }\nsteps:\n  - file: { path: "${out}/link/{{name}}.txt", content: "hi\\n", mode: "0644" }\n`,
    );
  });
  after(() => cluster?.close());

  const jobCount = async () => (await cluster.client().listJobs({})).jobs.length;

  it("refuses -p name=../escaped with INVALID_ARGUMENT naming the parameter; nothing is written outside", async () => {
    const jobsBefore = await jobCount();
    await assert.rejects(
      cluster.client().runPlan({ plan: "named", nodes: ["p1"], parameters: { name: "../escaped" } }),
      (e: unknown) => codeOf(e) === Code.InvalidArgument && /parameters\.name/.test(String(e)),
    );
    await assert.rejects(
      cluster.client().runPlan({ plan: "named", nodes: ["p1"], parameters: { name: "a/../../escaped" } }),
      (e: unknown) => codeOf(e) === Code.InvalidArgument,
    );
    assert.equal(await jobCount(), jobsBefore, "no job was created");
    assert.ok(!(await readdir(cluster.scratch)).includes("escaped.txt"));
    // A plain name still works, in the plan's directory.
    const { job } = await cluster
      .client()
      .runPlan({ plan: "named", nodes: ["p1"], parameters: { name: "ok" } });
    assert.equal((await jobFinished(cluster.client(), job?.id ?? "")).status, RunStatus.SUCCEEDED);
    assert.equal(await readFile(join(out, "ok.txt"), "utf8"), "hi\n");
  });

  it("refuses a value that does not match the parameter's pattern with INVALID_ARGUMENT", async () => {
    await assert.rejects(
      cluster.client().runPlan({ plan: "patterned", nodes: ["p1"], parameters: { name: "../x" } }),
      (e: unknown) => codeOf(e) === Code.InvalidArgument && /parameters\.name/.test(String(e)),
    );
  });

  it("does not write through a symlink that leads out of the roots", async () => {
    const { job } = await cluster.client().runPlan({
      plan: "linked",
      nodes: ["p1"],
      parameters: { name: "sneaky" },
    });
    const finished = await jobFinished(cluster.client(), job?.id ?? "");
    assert.equal(finished.status, RunStatus.FAILED);
    const messages = finished.nodes.flatMap((node) => node.steps.map((step) => step.message));
    assert.match(messages.join("\n"), /outside the plan's roots/);
    assert.deepEqual(await readdir(elsewhere), []);
  });
});
