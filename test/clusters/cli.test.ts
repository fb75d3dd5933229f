import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { mkdir, readdir } from "node:fs/promises";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { corralBin } from "../helpers/corral-processes.ts";
import { type ProvisioningCluster, startProvisioningCluster } from "../provisioning/fixture.ts";
import { testClusterPlans, testPlans } from "./test-plans.ts";

interface Result {
  code: number;
  stdout: string;
  stderr: string;
}

/** The real CLI as a separate process, without the caller's CORRAL_* settings; at most 60 s. */
function corral(args: string[]): Promise<Result> {
  const env: NodeJS.ProcessEnv = {};
  for (const [key, value] of Object.entries(process.env)) if (!key.startsWith("CORRAL_")) env[key] = value;
  return new Promise((resolve) => {
    execFile(
      process.execPath,
      [corralBin, ...args],
      { timeout: 60_000, killSignal: "SIGKILL", env },
      (error, stdout, stderr) => {
        const code = error === null ? 0 : typeof error.code === "number" ? error.code : -1;
        resolve({ code, stdout, stderr });
      },
    );
  });
}

describe("corral cluster (CLI)", () => {
  let fleet: ProvisioningCluster;
  let dir: string;
  let server: string[];

  before(async () => {
    fleet = await startProvisioningCluster(["cli-srv", "cli-ag-1", "cli-ag-2"]);
    for (const [file, text] of Object.entries(testPlans)) await fleet.writePlan(file, text);
    dir = join(fleet.scratch, "k3s");
    await mkdir(dir);
    server = ["--server", `127.0.0.1:${fleet.controller.bridgePort}`];
  });

  after(async () => {
    await fleet?.close();
  });

  it("create, add, provision --wait, status, rm, deprovision --wait, delete", async () => {
    const created = await corral([
      ...server,
      "cluster",
      "create",
      "lab",
      "cli-srv",
      "cli-ag-1",
      "--server-plan",
      testClusterPlans.server,
      "--agent-plan",
      testClusterPlans.agent,
      "--server-uninstall-plan",
      testClusterPlans.serverUninstall,
      "--agent-uninstall-plan",
      testClusterPlans.agentUninstall,
      "-p",
      `dir=${dir}`,
      "-p",
      "failOnce=cli-ag-2",
    ]);
    assert.equal(created.code, 0, created.stderr);
    assert.match(created.stdout, /^state:\s+new$/m);

    const added = await corral([...server, "cluster", "add", "lab", "cli-ag-2"]);
    assert.equal(added.code, 0, added.stderr);
    assert.match(added.stdout, /^cli-ag-2\s+agent\s+pending/m);

    const provisioned = await corral([...server, "cluster", "provision", "lab", "--wait"]);
    assert.equal(provisioned.code, 0, provisioned.stderr + provisioned.stdout);
    assert.match(provisioned.stdout, /^state:\s+ready$/m);
    assert.match(provisioned.stdout, /^healthy:\s+3\/3/m);
    assert.match(provisioned.stdout, /^join token:\s+handed out by the server \(hidden\)$/m);
    assert.match(provisioned.stdout, /^cli-srv\s+server\s+provisioned\s+ready\s/m);
    assert.match(provisioned.stdout, /^cli-ag-2\s+agent\s+provisioned\s+ready\s+\S+\s+\d+\s+2\s/m);

    const listed = await corral([...server, "cluster", "ls"]);
    assert.match(listed.stdout, /^lab\s+ready\s+cli-srv\s+2\s+3\/3/m);

    const json = await corral([...server, "-o", "json", "cluster", "status", "lab"]);
    assert.equal(JSON.parse(json.stdout).state, "CLUSTER_STATE_READY");

    const removed = await corral([...server, "cluster", "rm", "lab", "cli-ag-1", "--wait"]);
    assert.equal(removed.code, 0, removed.stderr);
    assert.doesNotMatch(removed.stdout, /^cli-ag-1\s/m);
    assert.ok(!(await readdir(dir)).some((file) => file.includes("cli-ag-1")));

    const refused = await corral([...server, "cluster", "delete", "lab"]);
    assert.equal(refused.code, 1);
    assert.match(refused.stderr, /deprovision it first/);

    const deprovisioned = await corral([...server, "cluster", "deprovision", "lab", "--wait"]);
    assert.equal(deprovisioned.code, 0, deprovisioned.stderr + deprovisioned.stdout);
    assert.match(deprovisioned.stdout, /^state:\s+deprovisioned$/m);
    assert.deepEqual(await readdir(dir), []);

    const deleted = await corral([...server, "cluster", "delete", "lab"]);
    assert.equal(deleted.code, 0, deleted.stderr);
    const missing = await corral([...server, "cluster", "status", "lab"]);
    assert.equal(missing.code, 1);
    assert.match(missing.stderr, /NOT_FOUND|not found/i);
  });
});
