import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { chmod, mkdir, mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { startTestController, type TestController } from "../helpers/controller.ts";
import { corralBin } from "../helpers/corral-processes.ts";

interface Result {
  code: number;
  stdout: string;
  stderr: string;
}

/** The real CLI as a separate process, without the caller's CORRAL_* settings; at most 30 s. */
function corral(args: string[]): Promise<Result> {
  const env: NodeJS.ProcessEnv = {};
  for (const [key, value] of Object.entries(process.env)) if (!key.startsWith("CORRAL_")) env[key] = value;
  return new Promise((resolve) => {
    execFile(
      process.execPath,
      [corralBin, ...args],
      { timeout: 30_000, killSignal: "SIGKILL", env },
      (error, stdout, stderr) => {
        const code = error === null ? 0 : typeof error.code === "number" ? error.code : -1;
        resolve({ code, stdout, stderr });
      },
    );
  });
}

/**
 * `corral provision …` end to end, on the controller's own node (the controller is a node too and runs
 * its steps itself): no agent is needed to drive the whole command set.
 */
describe("corral provision (CLI)", () => {
  let scratch: string;
  let cluster: TestController;
  let server: string[];
  const node = "My Controller";
  before(async () => {
    scratch = await mkdtemp(join(tmpdir(), "corral-prov-cli-"));
    // Exec steps run as `nobody` when the tests run as root: they must be able to look in here.
    await chmod(scratch, 0o755);
    const plansDir = join(scratch, "plans");
    await mkdir(plansDir);
    await writeFile(
      join(plansDir, "local.yaml"),
      `name: local
version: 0.1.0
description: a file and a check under a temp dir
parameters:
  dir: { required: true, pattern: "/[A-Za-z0-9._/-]+" }
steps:
  - name: write hello
    file: { path: "{{dir}}/hello.txt", content: "hello from {{node.name}}\\n", mode: "0644" }
  - name: wait for go
    waitFor: { file: "{{dir}}/go", timeout: 20s, interval: 50ms }
  - name: tick
    exec: ["${process.execPath}", "-e", "let i = 0; const t = setInterval(() => { console.log('tick ' + i); if (++i === 3) clearInterval(t); }, 150)"]
  - name: check the flag
    exec: [test, -f, "{{dir}}/flag"]
`,
    );
    await writeFile(
      join(plansDir, "broken.yaml"),
      "name: broken\nversion: 1\nsteps:\n  - systemd: { unit: x }\n",
    );
    cluster = await startTestController({ node: { name: node }, provisioning: { plansDir } });
    server = ["--server", `127.0.0.1:${cluster.bridgePort}`];
  });
  after(async () => {
    await cluster.close();
    await rm(scratch, { recursive: true, force: true });
  });

  it("lists plans and the plan files it refused", async () => {
    const result = await corral([...server, "provision", "plans"]);
    assert.match(result.stdout, /^PLAN\s+VERSION\s+STEPS\s+PARAMETERS\s+DESCRIPTION/m);
    assert.match(result.stdout, /^base\s+1\.0\.0\s+6\s+hostname\*,timezone,packages\[\]/m);
    assert.match(result.stdout, /^local\s+0\.1\.0\s+4\s+dir\*/m);
    assert.match(result.stderr, /broken\.yaml:4: step 1: systemd\.action: is required/);
    assert.equal(result.code, 1, "a refused plan file makes `plans` exit 1");
  });

  it("dry run, run --wait (failing), logs, status, then retry --wait after fixing the cause", async () => {
    const dir = join(scratch, "work");
    const dry = await corral([
      ...server,
      "provision",
      "run",
      "local",
      "--node",
      node,
      "-p",
      `dir=${dir}`,
      "--dry-run",
    ]);
    assert.equal(dry.code, 0, dry.stderr);
    assert.match(dry.stdout, /nothing was run/);
    assert.match(
      dry.stdout,
      new RegExp(`1\\. write hello: write ${dir}/hello\\.txt \\(25 bytes, mode 0644\\)`),
    );
    await assert.rejects(readFile(join(dir, "hello.txt")), /ENOENT/);

    await mkdir(dir, { recursive: true });
    await writeFile(join(dir, "go"), "");
    const run = await corral([
      ...server,
      "provision",
      "run",
      "local",
      "--node",
      node,
      "-p",
      `dir=${dir}`,
      "--wait",
    ]);
    assert.equal(run.code, 1, `${run.stdout}\n${run.stderr}`);
    const id = /^job (\d+):/m.exec(run.stdout)?.[1] ?? assert.fail(run.stdout);
    assert.match(run.stdout, /\[My Controller\] step 1\/4 "write hello": succeeded/);
    assert.match(run.stdout, /\[My Controller\] step 4\/4 "check the flag": failed — exit code 1/);
    assert.match(run.stdout, new RegExp(`job ${id} failed`));
    assert.equal(await readFile(join(dir, "hello.txt"), "utf8"), `hello from ${node}\n`);

    const logs = await corral([...server, "provision", "logs", id]);
    assert.equal(logs.code, 0, logs.stderr);
    assert.match(logs.stdout, /=== My Controller \(failed\)/);
    assert.match(logs.stdout, /--- step 3 "tick": succeeded — exit code 0\ntick 0\ntick 1\ntick 2\n/);

    const status = await corral([...server, "provision", "status", id]);
    assert.equal(status.code, 1, "a failed job's status exits 1");
    assert.match(status.stdout, /^status:\s+failed/m);
    assert.match(status.stdout, /^\s+4\. check the flag\s+failed\s+exit code 1/m);

    await writeFile(join(dir, "flag"), "");
    const retry = await corral([...server, "provision", "retry", id, "--wait"]);
    assert.equal(retry.code, 0, `${retry.stdout}\n${retry.stderr}`);
    assert.match(retry.stdout, /retry 2 by /);
    assert.match(retry.stdout, new RegExp(`job ${id} succeeded`));
    const json = JSON.parse((await corral([...server, "-o", "json", "provision", "status", id])).stdout) as {
      status: string;
      nodes: { attempt: number; steps: { status: string }[] }[];
    };
    assert.equal(json.status, "RUN_STATUS_SUCCEEDED");
    assert.equal(json.nodes[0]?.attempt, 2);
    assert.equal(json.nodes[0]?.steps[0]?.status, "STEP_STATUS_UNCHANGED");

    const jobs = await corral([...server, "provision", "jobs"]);
    assert.match(jobs.stdout, new RegExp(`^${id}\\s+local@0\\.1\\.0\\s+succeeded\\s+1/1 ok`, "m"));
  });

  it("logs -f streams output as the steps print it and ends with the job", async () => {
    const dir = join(scratch, "follow");
    await mkdir(dir, { recursive: true });
    await writeFile(join(dir, "flag"), "");
    const run = await corral([...server, "provision", "run", "local", "--node", node, "-p", `dir=${dir}`]);
    const id = /^job (\d+):/m.exec(run.stdout)?.[1] ?? assert.fail(run.stdout);
    // The job waits for a go file: `logs -f` connects while it runs, then the output streams.
    const following = corral([...server, "provision", "logs", "-f", id]);
    await new Promise((resolve) => setTimeout(resolve, 1_500));
    await writeFile(join(dir, "go"), "");
    const follow = await following;
    assert.equal(follow.code, 0, follow.stderr);
    assert.match(
      follow.stdout,
      /My Controller \| tick 0\nMy Controller \| tick 1\nMy Controller \| tick 2\n/,
    );
    assert.match(follow.stdout, new RegExp(`job ${id} succeeded`));
  });

  it("refuses usage errors with exit 2 and unknown plans with exit 1", async () => {
    const both = await corral([...server, "provision", "run", "local", "--all", "--node", node]);
    assert.equal(both.code, 2);
    assert.match(both.stderr, /exactly one of --node, --all, --selector/);
    const badParam = await corral([...server, "provision", "run", "local", "--node", node, "-p", "dir"]);
    assert.equal(badParam.code, 2);
    const unknown = await corral([...server, "provision", "run", "nope", "--node", node]);
    assert.equal(unknown.code, 1);
    assert.match(unknown.stderr, /no plan "nope"/);
    const noJob = await corral([...server, "provision", "status", "999"]);
    assert.equal(noJob.code, 1);
    assert.match(noJob.stderr, /job "999" not found/);
  });
});
