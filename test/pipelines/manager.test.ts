import assert from "node:assert/strict";
import { existsSync } from "node:fs";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { test } from "node:test";
import { setTimeout as sleep } from "node:timers/promises";
import { CorralError } from "../../src/base/errors.ts";
import { type PipelineEvent, PipelineManager, type PipelineSettings } from "../../src/pipelines/manager.ts";
import { guideConfig, processConfig } from "./fixtures.ts";

const settings = (over: Partial<PipelineSettings> = {}): PipelineSettings => ({
  name: "My First Pipeline",
  jsonConfig: guideConfig,
  restartPolicy: { kind: "on_failure", maxRestarts: 3 },
  startup: "manual",
  defaultLoggingLevel: 1,
  instructionsTimeout: 15,
  performanceMode: true,
  ...over,
});

async function until<T>(what: string, probe: () => T | undefined, timeoutMs = 15_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = probe();
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(50);
  }
}

test("CRUD, events in order, persisted desired set", async (t) => {
  const dir = await mkdtemp(join(tmpdir(), "corral-pipelines-"));
  t.after(() => rm(dir, { recursive: true, force: true }));
  const manager = await PipelineManager.open({ dataDir: dir });
  const events: PipelineEvent[] = [];
  manager.subscribe((event) => events.push(event));
  const created = await manager.create(settings());
  assert.equal(created.instructionsTimeout, 15);
  const updated = await manager.update(created.id, settings({ name: "My Updated Pipeline" }), false);
  assert.equal(manager.get(created.id).name, "My Updated Pipeline");
  assert.equal(updated.name, "My Updated Pipeline");
  await assert.rejects(manager.create(settings({ name: "My Updated Pipeline" })), { code: "ALREADY_EXISTS" });
  await assert.rejects(manager.create(settings({ name: "bad", jsonConfig: "{" })), {
    code: "INVALID_ARGUMENT",
  });
  await manager.close();
  const again = await PipelineManager.open({ dataDir: dir });
  assert.deepEqual(
    again.list().map((p) => p.name),
    ["My Updated Pipeline"],
  );
  again.subscribe((event) => events.push(event));
  await again.delete(created.id);
  assert.deepEqual(
    events.map((e) => `${e.type}:${e.pipeline.name}`),
    ["create:My First Pipeline", "update:My Updated Pipeline", "delete:My Updated Pipeline"],
  );
  assert.deepEqual(again.list(), []);
  await again.close();
});

test("the guide's config runs: the sink receives all 5 000 packets, no loss; the run then completes by itself", async (t) => {
  const dir = await mkdtemp(join(tmpdir(), "corral-pipelines-"));
  t.after(() => rm(dir, { recursive: true, force: true }));
  const manager = await PipelineManager.open({ dataDir: dir });
  t.after(() => manager.close());
  const pipeline = await manager.create(settings());
  const runId = await manager.start(pipeline.id);
  const { run } = manager.run(runId);
  assert.equal(manager.get(pipeline.id).currentRun, runId);
  const sink = await until("5000 packets", () => {
    const s = run.stats["traffic_sink-1"];
    return s !== undefined && s.packets_received === 5000 ? s : undefined;
  });
  assert.equal(sink.lost, 0);
  assert.equal(run.stats["uniform_traffic_source-1"]?.packets_sent, 5000);
  assert.ok((await run.logs.tail(100, {})).some((e) => e.message.includes("sent 5000 packets")));
  // Every packet sent and drained: the run completes by itself and the pipeline is no longer started.
  await run.done;
  assert.equal(run.state, "succeeded");
  assert.equal(run.exitReason, "completed");
  assert.equal(run.exitCode, 0);
  assert.ok(run.finishedAt !== undefined && run.finishedAt >= run.startedAt);
  assert.equal(manager.get(pipeline.id).started, false);
  assert.equal(manager.get(pipeline.id).currentRun, undefined);
  await manager.stop({ runId });
  assert.equal(run.state, "succeeded");
});

test("a stopped run ends stopped; a completed one is not started again after a node restart", async (t) => {
  const dir = await mkdtemp(join(tmpdir(), "corral-pipelines-"));
  t.after(() => rm(dir, { recursive: true, force: true }));
  let manager = await PipelineManager.open({ dataDir: dir });
  const slow = JSON.parse(guideConfig);
  slow.plumr_config.pipeline["uniform_traffic_source-1"].uniform_traffic_source.interval = 1_000_000;
  const endless = await manager.create(settings({ name: "slow", jsonConfig: JSON.stringify(slow) }));
  const quick = await manager.create(settings({ name: "quick" }));
  const slowRun = manager.run(await manager.start(endless.id)).run;
  const quickRun = manager.run(await manager.start(quick.id)).run;
  await quickRun.done;
  assert.equal(quickRun.state, "succeeded");
  await until("running", () => (slowRun.state === "running" ? true : undefined));
  await manager.stop({ name: "slow" });
  assert.equal(slowRun.state, "stopped");
  assert.equal(slowRun.exitReason, "stopped");
  // let the completed run's "no longer started" reach the disk
  await until("saved", () => (manager.list().every((p) => !p.started) ? true : undefined));
  await manager.close();
  manager = await PipelineManager.open({ dataDir: dir });
  assert.deepEqual(
    manager.list().map((p) => [p.name, p.started]),
    [
      ["slow", false],
      ["quick", false],
    ],
  );
  await manager.close();
});

test("a crash-looping process is restarted exactly max_restarts times, then failed", async (t) => {
  const dir = await mkdtemp(join(tmpdir(), "corral-pipelines-"));
  t.after(() => rm(dir, { recursive: true, force: true }));
  const manager = await PipelineManager.open({ dataDir: dir, backoffMs: 10 });
  t.after(() => manager.close());
  const pipeline = await manager.create(
    settings({ name: "crash", jsonConfig: processConfig(["/bin/false"]) }),
  );
  const { run } = manager.run(await manager.start(pipeline.id));
  await run.done;
  assert.equal(run.state, "failed");
  assert.equal(run.restarts, 3);
  assert.match(run.exitReason, /a process exited 1/);
});

test("an incompatible config is stored and refused at start; auto start survives a restart; delete kills the process group", async (t) => {
  const dir = await mkdtemp(join(tmpdir(), "corral-pipelines-"));
  t.after(() => rm(dir, { recursive: true, force: true }));
  let manager = await PipelineManager.open({ dataDir: dir });
  const newer = await manager.create(settings({ name: "newer", jsonConfig: '{"version": 99}' }));
  assert.equal(newer.compatible, false);
  await assert.rejects(
    manager.start(newer.id),
    (e: unknown) => e instanceof CorralError && e.code === "FAILED_PRECONDITION",
  );
  const auto = await manager.create(
    settings({ name: "sleeper", startup: "auto", jsonConfig: processConfig(["/bin/sleep", "300"]) }),
  );
  assert.equal(auto.started, true);
  await manager.close();
  manager = await PipelineManager.open({ dataDir: dir });
  const view = manager.get(auto.id);
  assert.equal(view.started, true);
  const run = manager.run(view.currentRun ?? "").run;
  const pid = await until("pid", () => run.stats["process-1"]?.pid as number | undefined);
  assert.ok(existsSync(`/proc/${pid}`));
  await manager.delete(auto.id);
  assert.equal(existsSync(`/proc/${pid}`), false);
  await manager.close();
});
