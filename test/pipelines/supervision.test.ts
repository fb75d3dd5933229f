import assert from "node:assert/strict";
import { readdirSync, readFileSync } from "node:fs";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { test } from "node:test";
import { setTimeout as sleep } from "node:timers/promises";
import { parsePipelineConfig } from "../../src/pipelines/config.ts";
import { PipelineManager, type PipelineSettings } from "../../src/pipelines/manager.ts";
import { PipelineRun } from "../../src/pipelines/run.ts";
import { processConfig } from "./fixtures.ts";

async function until<T>(what: string, probe: () => T | undefined, timeoutMs = 15_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = probe();
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(50);
  }
}

/** Every live process whose process group is `pgid` (from /proc/<pid>/stat). */
function groupMembers(pgid: number): number[] {
  const members: number[] = [];
  for (const entry of readdirSync("/proc")) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const stat = readFileSync(`/proc/${entry}/stat`, "utf8");
      const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
      // fields[0] is the state, fields[2] the process group
      if (fields[0] !== "Z" && Number(fields[2]) === pgid) members.push(Number(entry));
    } catch {
      // gone while reading
    }
  }
  return members;
}

const allowedCpus = (path: string) => /Cpus_allowed_list:\s*(\S+)/.exec(readFileSync(path, "utf8"))?.[1];

test("a worker that ignores stop is terminated and its process groups are killed", {
  timeout: 30_000,
}, async () => {
  const parsed = parsePipelineConfig(processConfig(["/bin/true"]));
  assert.ok(parsed.compatible);
  const run = new PipelineRun({
    graph: parsed.graph,
    restart: { kind: "never", maxRestarts: 0 },
    instructionsTimeoutMs: 10_000,
    stopGraceMs: 500,
    workerUrl: new URL("./stuck-worker.mjs", import.meta.url),
  });
  const pgid = await until("the worker's process group", () => run.stats.stuck?.pid as number | undefined);
  await until("both processes of the group", () => (groupMembers(pgid).length >= 2 ? true : undefined));
  await run.stop();
  assert.equal(run.state, "stopped");
  assert.ok((await run.logs.tail(50, {})).some((e) => /did not stop in time/.test(e.message)));
  await until("the group to be gone", () => (groupMembers(pgid).length === 0 ? true : undefined), 5_000);
  assert.deepEqual(groupMembers(pgid), []);
});

const settings = (over: Partial<PipelineSettings>): PipelineSettings => ({
  name: "pinned",
  jsonConfig: processConfig(["/bin/sleep", "300"]),
  restartPolicy: { kind: "never", maxRestarts: 0 },
  startup: "manual",
  defaultLoggingLevel: 0,
  instructionsTimeout: 15,
  performanceMode: true,
  ...over,
});

test("cpu_pin pins the run's worker thread and its process blocks, and says so", {
  timeout: 30_000,
}, async (t) => {
  const dir = await mkdtemp(join(tmpdir(), "corral-pipelines-"));
  t.after(() => rm(dir, { recursive: true, force: true }));
  const manager = await PipelineManager.open({ dataDir: dir });
  t.after(() => manager.close());
  const mainThreadBefore = allowedCpus("/proc/self/status");
  const online = readFileSync("/sys/devices/system/cpu/online", "utf8").trim();
  const cpu = /\d+$/.exec(online)?.[0] === "0" ? 0 : 1;
  const pipeline = await manager.create(settings({ cpuPin: cpu }));
  const { run } = manager.run(await manager.start(pipeline.id));
  const pin = await until("the pin report", () => run.cpuPin);
  assert.equal(pin.cpu, cpu);
  assert.equal(pin.applied, true, pin.detail);
  const pid = await until("the process block's pid", () => run.stats["process-1"]?.pid as number | undefined);
  assert.equal(allowedCpus(`/proc/${pid}/status`), String(cpu));
  const tid = /taskset -p -c \d+ (\d+)/.exec(pin.detail)?.[1];
  assert.ok(tid, pin.detail);
  assert.equal(allowedCpus(`/proc/self/task/${tid}/status`), String(cpu));
  // The agent's own thread keeps every CPU.
  assert.equal(allowedCpus("/proc/self/status"), mainThreadBefore);

  const offline = await manager.create(settings({ name: "pinned-nowhere", cpuPin: 4095 }));
  const other = manager.run(await manager.start(offline.id)).run;
  const refused = await until("the pin report", () => other.cpuPin);
  assert.equal(refused.applied, false);
  assert.match(refused.detail, /cpu 4095 is not online/);
  const otherPid = await until("pid", () => other.stats["process-1"]?.pid as number | undefined);
  assert.equal(allowedCpus(`/proc/${otherPid}/status`), mainThreadBefore);
  await manager.delete(pipeline.id);
  await manager.delete(offline.id);
  assert.deepEqual(groupMembers(pid), []);
});
