import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { chmod, mkdir, mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { PipelineRunState, PipelineRunsService } from "../../src/gen/corral/v1/pipelines_pb.ts";
import { PipelinesService } from "../../src/gen/pipelines_pb.ts";
import { eventually } from "../helpers/agent.ts";
import { plaintextClient } from "../helpers/clients.ts";
import { type AgentProcess, CorralProcesses, startAgentProcess } from "../helpers/corral-processes.ts";
import { processesRunning } from "../helpers/proc.ts";
import { processConfig } from "./fixtures.ts";

/**
 * Real agents (`corral up` child processes) on a data dir of the test's own: what a pipeline's
 * `process` block starts must not outlive the agent, and must not run as root.
 */

/** sleep arguments no other process on the machine has, so the test finds its own in /proc. */
const tag = `${process.pid % 1000}`;
const leaderArg = `301.${tag}`;
const childArg = `302.${tag}`;
const userArg = `303.${tag}`;

const leader = () => processesRunning(["/bin/sleep", leaderArg]);
const grandchild = () => processesRunning(["/bin/sleep", childArg]);

/** Waits (bounded) until `probe` holds. */
const until = (what: string, probe: () => boolean, timeoutMs = 20_000) =>
  eventually(async () => (probe() ? true : undefined), timeoutMs, what);

/** The programs these tests' process blocks run, on the node's allow-list (empty by default). */
const allowPrograms = ["/bin/sh", "/bin/sleep", "/bin/cat"].flatMap((program) => [
  "--pipeline-allow",
  program,
]);

describe("what a pipeline run starts, against a real agent process", () => {
  const processes = new CorralProcesses();
  let dir: string;
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), "corral-lifetime-"));
  });
  after(async () => {
    await processes.killAll();
    // Whatever a failed run of this test left behind.
    for (const pid of [...leader(), ...grandchild(), ...processesRunning(["/bin/sleep", userArg])]) {
      try {
        process.kill(pid, "SIGKILL");
      } catch {
        // gone
      }
    }
    await rm(dir, { recursive: true, force: true });
  });

  it("kill -9 of the agent mid-run: the restarted agent runs exactly one copy, and stop leaves none", {
    timeout: 90_000,
  }, async () => {
    const dataDir = join(dir, "agent");
    let agent: AgentProcess = await startAgentProcess(processes, dataDir, allowPrograms);
    const nodeId = agent.nodeId;
    let pipelines = plaintextClient(PipelinesService, agent.localApiPort);
    // The block's program (its group's leader) and a grandchild in the same process group: the
    // parent-death signal reaches only the first, so the second shows that the groups are reaped.
    await pipelines.createPipeline({
      nodeId,
      name: "long",
      jsonConfig: processConfig(["/bin/sh", "-c", `/bin/sleep ${childArg} & exec /bin/sleep ${leaderArg}`]),
    });
    await pipelines.startPipeline({ nodeId, pipelineIdentifier: { case: "name", value: "long" } });
    await until("the run's two processes", () => leader().length === 1 && grandchild().length === 1);
    const before = [...leader(), ...grandchild()];

    await agent.process.stop("SIGKILL");
    // The agent is gone; its run's program dies with it (parent-death signal), not at the next start.
    await until("the block's program to die with the agent", () => leader().length === 0);

    agent = await startAgentProcess(processes, dataDir, allowPrograms);
    assert.equal(agent.nodeId, nodeId);
    pipelines = plaintextClient(PipelinesService, agent.localApiPort);
    await until(
      "the old group to be reaped and the pipeline to run again",
      () =>
        before.every((pid) => !leader().includes(pid) && !grandchild().includes(pid)) &&
        leader().length >= 1 &&
        grandchild().length >= 1,
    );
    assert.equal(leader().length, 1, "exactly one copy of the block's program");
    assert.equal(grandchild().length, 1, "exactly one copy of what it started");

    await pipelines.stopPipeline({ nodeId, pipelineIdentifier: { case: "name", value: "long" } });
    await until("stop to kill the whole group", () => leader().length === 0 && grandchild().length === 0);
    await agent.process.stop("SIGTERM");
  });

  it("a root agent runs process blocks as nobody, without its environment, unable to read a 0600 key in a 0700 dir", {
    timeout: 60_000,
    skip: process.geteuid?.() === 0 ? false : "needs root (the agent drops to nobody only when it is root)",
  }, async () => {
    const keys = join(dir, "keys");
    await mkdir(keys, { mode: 0o700 });
    await chmod(keys, 0o700);
    const key = join(keys, "node.key");
    await writeFile(key, "-----BEGIN PRIVATE KEY-----\n", { mode: 0o600 });
    assert.match(await readFile(key, "utf8"), /PRIVATE KEY/, "root can read it");

    process.env.CORRAL_TEST_SECRET = "agent-only";
    let agent: AgentProcess;
    try {
      agent = await startAgentProcess(processes, join(dir, "root-agent"), allowPrograms);
    } finally {
      delete process.env.CORRAL_TEST_SECRET;
    }
    const { nodeId } = agent;
    const pipelines = plaintextClient(PipelinesService, agent.localApiPort);
    const runs = plaintextClient(PipelineRunsService, agent.localApiPort);

    await pipelines.createPipeline({
      nodeId,
      name: "who",
      jsonConfig: processConfig(["/bin/sleep", userArg]),
    });
    await pipelines.startPipeline({ nodeId, pipelineIdentifier: { case: "name", value: "who" } });
    const [pid] = await eventually(async () => {
      const found = processesRunning(["/bin/sleep", userArg]);
      return found.length === 1 ? found : undefined;
    });
    const status = readFileSync(`/proc/${pid}/status`, "utf8");
    const nobody = readFileSync("/etc/passwd", "utf8")
      .split("\n")
      .find((line) => line.startsWith("nobody:"))
      ?.split(":");
    assert.ok(nobody, "this machine has a nobody user");
    assert.match(
      status,
      new RegExp(`^Uid:\\s+${nobody[2]}\\s+${nobody[2]}\\s+${nobody[2]}\\s+${nobody[2]}$`, "m"),
    );
    assert.match(status, new RegExp(`^Gid:\\s+${nobody[3]}\\s`, "m"));
    assert.match(status, /^Groups:\s*$/m, "no supplementary groups (root's are dropped)");
    const environ = readFileSync(`/proc/${pid}/environ`, "utf8").split("\0");
    assert.ok(!environ.some((v) => v.startsWith("CORRAL_TEST_SECRET=")), "the agent's environment stays");
    assert.ok(environ.includes("USER=nobody"), environ.join(" "));
    await pipelines.stopPipeline({ nodeId, pipelineIdentifier: { case: "name", value: "who" } });

    await pipelines.createPipeline({ nodeId, name: "thief", jsonConfig: processConfig(["/bin/cat", key]) });
    const { runId } = await pipelines.startPipeline({
      nodeId,
      pipelineIdentifier: { case: "name", value: "thief" },
    });
    const run = await eventually(async () => {
      const { run } = await runs.getRun({ nodeId, runId });
      return run?.state === PipelineRunState.FAILED ? run : undefined;
    });
    assert.equal(run.exitCode, 1, "cat could not open the key");
    await agent.process.stop("SIGTERM");
  });
});
