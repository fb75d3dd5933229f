import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { chmod, mkdir, mkdtemp, readFile, rm, stat, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { Code, ConnectError } from "@connectrpc/connect";
import { ProvisioningService, RunStatus } from "../../src/gen/corral/v1/provisioning_pb.ts";
import { eventually } from "../helpers/agent.ts";
import { plaintextClient } from "../helpers/clients.ts";
import { startTestController, type TestController } from "../helpers/controller.ts";
import { type AgentProcess, CorralProcesses, startAgentProcess } from "../helpers/corral-processes.ts";
import { processesRunning } from "../helpers/proc.ts";
import { jobFinished, nodeOf } from "./fixture.ts";

/**
 * A provisioning step on a real agent (`corral up`, a child process joined by token to a real
 * controller): nothing the step started outlives its end, nor the agent.
 */

const tag = `${process.pid % 1000}`;
/** sleep arguments no other process on the machine has. */
const hangArg = `311.${tag}`;
const leftArg = `312.${tag}`;

const until = (what: string, probe: () => boolean, timeoutMs = 20_000) =>
  eventually(async () => (probe() ? true : undefined), timeoutMs, what);

describe("provisioning steps on a real agent process", () => {
  const processes = new CorralProcesses();
  let scratch: string;
  let out: string;
  let controller: TestController;
  let agent: AgentProcess;
  let dataDir: string;
  const hangScript = () => `/bin/sleep ${hangArg}; /bin/touch ${out}/finished`;
  const hang = () => processesRunning(["/bin/sh", "-c", hangScript()]);
  const hangSleep = () => processesRunning(["/bin/sleep", hangArg]);
  const leftover = () => processesRunning(["/bin/sleep", leftArg]);

  before(async () => {
    scratch = await mkdtemp(join(tmpdir(), "corral-prov-life-"));
    await chmod(scratch, 0o755);
    out = join(scratch, "out");
    await mkdir(out);
    // The steps run as nobody (the agent is root in CI): they may write here, nowhere else of ours.
    await chmod(out, 0o777);
    const plansDir = join(scratch, "plans");
    await mkdir(plansDir);
    await writeFile(
      join(plansDir, "hang.yaml"),
      `name: hang\nversion: "1"\nsteps:\n  - name: hang\n    exec: ["/bin/sh", "-c", "${hangScript()}"]\n`,
    );
    await writeFile(
      join(plansDir, "leave.yaml"),
      `name: leave\nversion: "1"\nsteps:\n  - name: leave\n    exec: ["/bin/sh", "-c", "/bin/sleep ${leftArg} & exit 3"]\n`,
    );
    await writeFile(
      join(plansDir, "who.yaml"),
      [
        "name: who",
        'version: "1"',
        "steps:",
        "  - name: as the provisioning user",
        `    exec: ["/bin/sh", "-c", "id -u > ${out}/plain; env > ${out}/plain.env"]`,
        "  - name: as root, because the plan says so",
        `    exec: ["/bin/sh", "-c", "id -u > ${out}/root"]`,
        "    root: true",
        "",
      ].join("\n"),
    );
    controller = await startTestController({ provisioning: { plansDir } });
    const { token } = await controller.controller.context.tokens.create({
      role: "node",
      ttlMs: 60_000,
      uses: 1,
      description: "process lifetime test",
      createdBy: "test",
      caFingerprint: controller.controller.ca.fingerprint,
    });
    dataDir = join(scratch, "agent");
    process.env.CORRAL_TEST_SECRET = "agent-only";
    agent = await startAgentProcess(processes, dataDir, [
      "--name",
      "prov-life",
      "--join",
      `127.0.0.1:${controller.clusterPort}`,
      "--token",
      token,
    ]).finally(() => {
      delete process.env.CORRAL_TEST_SECRET;
    });
  });
  after(async () => {
    await processes.killAll();
    for (const pid of [...hang(), ...hangSleep(), ...leftover()]) {
      try {
        process.kill(pid, "SIGKILL");
      } catch {
        // gone
      }
    }
    await controller?.close();
    await rm(scratch, { recursive: true, force: true });
  });

  const client = () => plaintextClient(ProvisioningService, controller.bridgePort);
  /** Starts the plan on the agent once the controller sees it ready (bounded). */
  const runPlan = (plan: string) =>
    eventually(
      async () => {
        try {
          const { job } = await client().runPlan({ plan, nodes: ["prov-life"] });
          return job?.id;
        } catch (error) {
          if (error instanceof ConnectError && error.code === Code.FailedPrecondition) return undefined;
          throw error;
        }
      },
      20_000,
      "the agent to be ready for a job",
    );

  it("a failed step's process group is dead when the job says failed", { timeout: 60_000 }, async () => {
    const id = await runPlan("leave");
    const job = await jobFinished(client(), id);
    assert.equal(job.status, RunStatus.FAILED);
    const node = nodeOf(job, "prov-life");
    assert.match(node.steps[0]?.message ?? "", /exit code 3/, `the node's run: ${node.message}`);
    // Killed before the step's end was reported; SIGKILL takes effect as the kernel tears it down.
    await until("the step's leftover to be gone", () => leftover().length === 0, 5_000);
  });

  it("a root agent runs exec steps as nobody with a clean environment, and as root only where the plan says root: true", {
    timeout: 60_000,
    skip: process.geteuid?.() === 0 ? false : "needs root (the agent drops to nobody only when it is root)",
  }, async () => {
    const id = await runPlan("who");
    const job = await jobFinished(client(), id);
    assert.equal(job.status, RunStatus.SUCCEEDED, job.message);
    const nobody = readFileSync("/etc/passwd", "utf8")
      .split("\n")
      .find((line) => line.startsWith("nobody:"))
      ?.split(":")[2];
    assert.equal((await readFile(join(out, "plain"), "utf8")).trim(), nobody);
    assert.equal((await readFile(join(out, "root"), "utf8")).trim(), "0");
    const env = await readFile(join(out, "plain.env"), "utf8");
    assert.doesNotMatch(env, /CORRAL_TEST_SECRET/, "the agent's environment is not passed on");
    assert.match(env, /^USER=nobody$/m);
  });

  it("kill -9 of the agent mid-step: the step dies with it, and the restarted agent reaps its group", {
    timeout: 90_000,
  }, async () => {
    const id = await runPlan("hang");
    await until("the step to run", () => hang().length === 1 && hangSleep().length === 1);
    await agent.process.stop("SIGKILL");
    // The step's program dies with the agent (parent-death signal): it cannot finish behind the job's back.
    await until("the step's program to die with the agent", () => hang().length === 0);
    const job = await jobFinished(client(), id, 30_000);
    assert.equal(job.status, RunStatus.FAILED);

    // Its child (same group, no parent-death signal of its own) is reaped by the next agent.
    agent = await startAgentProcess(processes, dataDir);
    await until("the step's group to be reaped", () => hangSleep().length === 0);
    await assert.rejects(stat(join(out, "finished")), /ENOENT/, "the step never finished");
    await agent.process.stop("SIGTERM");
  });
});
