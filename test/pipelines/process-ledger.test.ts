import assert from "node:assert/strict";
import { type ChildProcess, spawn } from "node:child_process";
import { mkdtemp, readFile, rm, stat, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { ProcessLedger, readProcStat } from "../../src/host/process-ledger.ts";
import { eventually } from "../helpers/agent.ts";
import { CorralProcesses, corralBin } from "../helpers/corral-processes.ts";

/** A real process group: a shell (the leader) and a sleep it started. */
function startGroup(): ChildProcess {
  return spawn("/bin/sh", ["-c", "/bin/sleep 300 & wait"], { detached: true, stdio: "ignore" });
}

const alive = (pid: number) => {
  const stat = readProcStat(pid);
  return stat !== undefined && stat.state !== "Z";
};

const bootId = async () => (await readFile("/proc/sys/kernel/random/boot_id", "utf8")).trim();

describe("the process ledger (reaping what an earlier agent left)", () => {
  let dir: string;
  const started: ChildProcess[] = [];
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), "corral-ledger-"));
  });
  after(async () => {
    for (const child of started) {
      try {
        if (child.pid !== undefined) process.kill(-child.pid, "SIGKILL");
      } catch {
        // gone
      }
    }
    await rm(dir, { recursive: true, force: true });
  });

  it("kills a recorded group that is still the same, and leaves a recycled or foreign pid alone", async () => {
    const file = join(dir, "groups.json");
    const ours = startGroup();
    const recycled = startGroup();
    const otherBoot = startGroup();
    started.push(ours, recycled, otherBoot);
    const pids = [ours, recycled, otherBoot].map((c) => c.pid ?? assert.fail("no pid"));
    const [oursPid, recycledPid, otherBootPid] = pids as [number, number, number];
    await eventually(async () => (pids.every(alive) ? true : undefined));

    const ledger = await ProcessLedger.open(file, { graceMs: 500 });
    ledger.record(oursPid, "pipeline run-1");
    assert.equal((await stat(file)).mode & 0o777, 0o600);
    const boot = await bootId();
    // What a crashed agent's file could hold: a pid since reused by another process (other start time),
    // and an entry from before a reboot.
    const entries = [
      ...ledger.entries,
      { pgid: recycledPid, startTime: "1", bootId: boot, what: "pipeline run-2" },
      {
        pgid: otherBootPid,
        startTime: readProcStat(otherBootPid)?.startTime ?? "",
        bootId: "another-boot",
        what: "x",
      },
    ];
    await writeFile(file, JSON.stringify(entries));

    const reaped: number[] = [];
    const next = await ProcessLedger.open(file, { graceMs: 500, onReaped: (e) => reaped.push(e.pgid) });
    assert.deepEqual(reaped, [oursPid]);
    await eventually(async () => (!alive(oursPid) ? true : undefined), 5_000, "the recorded group to die");
    assert.ok(alive(recycledPid), "a pid with another start time is not ours");
    assert.ok(alive(otherBootPid), "an entry from another boot is ignored");
    assert.deepEqual(next.entries, []);
    assert.deepEqual(JSON.parse(await readFile(file, "utf8")), [], "reaped entries are not kept");
  });

  it("a garbled file reaps nothing and is replaced", async () => {
    const file = join(dir, "garbled.json");
    await writeFile(file, '[{"pgid": 1, "startTime": "0"}, {"pgid": "x"}');
    const ledger = await ProcessLedger.open(file, { graceMs: 100 });
    assert.deepEqual(ledger.entries, []);
    assert.deepEqual(JSON.parse(await readFile(file, "utf8")), []);
  });
});

describe("--run-as", () => {
  const processes = new CorralProcesses();
  let dir: string;
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), "corral-runas-"));
  });
  after(async () => {
    await processes.killAll();
    await rm(dir, { recursive: true, force: true });
  });

  it("an agent whose run-as user does not exist refuses to start, saying which and what to do", {
    timeout: 30_000,
  }, async () => {
    assert.ok(corralBin.endsWith("corral.js"));
    const agent = processes.start([
      "up",
      "--grpc",
      "127.0.0.1:0",
      "--listen",
      "127.0.0.1:0",
      "--data-dir",
      join(dir, "agent"),
      "--run-as",
      "no-such-user-here",
    ]);
    await eventually(async () => (agent.exited ? true : undefined), 20_000, "the agent to exit");
    assert.match(agent.stderr(), /--run-as: no user "no-such-user-here" on this node/);
    assert.notEqual(agent.child.exitCode, 0);
    await assert.rejects(stat(join(dir, "agent")), /ENOENT/, "nothing was created");
  });
});
