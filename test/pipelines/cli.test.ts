import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { writeFile } from "node:fs/promises";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { setTimeout as sleep } from "node:timers/promises";
import { startTestController, type TestController } from "../helpers/controller.ts";
import { corralBin } from "../helpers/corral-processes.ts";
import { guideConfig } from "./fixtures.ts";

/** `corral pipelines …`, the real CLI in its own process, against a real controller's own node. */
describe("corral pipelines", () => {
  let controller: TestController;

  before(async () => {
    controller = await startTestController();
  });
  after(async () => {
    await controller?.close();
  });

  const corral = (args: string[], input?: string) =>
    new Promise<{ code: number; stdout: string; stderr: string }>((resolve) => {
      const child = execFile(
        process.execPath,
        [corralBin, "--server", `127.0.0.1:${controller.bridgePort}`, ...args],
        { timeout: 30_000 },
        (error, stdout, stderr) =>
          resolve({ code: error === null ? 0 : Number(error.code ?? 1), stdout, stderr }),
      );
      if (input !== undefined) child.stdin?.end(input);
      else child.stdin?.end();
    });

  it("create (file and stdin), ls, show, update, start, telemetry, logs, stop, rm", {
    timeout: 240_000,
  }, async () => {
    const file = join(controller.dataDir, "guide.json");
    await writeFile(file, guideConfig);
    const created = await corral([
      "-o",
      "json",
      "pipelines",
      "create",
      "--name",
      "cli-guide",
      "--config",
      file,
      "--restart",
      "on-failure:3",
    ]);
    assert.equal(created.code, 0, created.stderr);
    const pipeline = JSON.parse(created.stdout) as { id: string; name: string; restartPolicy: unknown };
    assert.equal(pipeline.name, "cli-guide");
    assert.deepEqual(pipeline.restartPolicy, { onFailure: { maxRestarts: 3 } });

    const fromStdin = await corral(["pipelines", "create", "--name", "cli-stdin"], guideConfig);
    assert.equal(fromStdin.code, 0, fromStdin.stderr);
    assert.match(fromStdin.stdout, /name:\s+cli-stdin/);

    const bad = await corral(["pipelines", "create", "--name", "cli-bad"], '{"version": 13, "plumr');
    assert.notEqual(bad.code, 0);
    assert.match(bad.stderr, /INVALID_ARGUMENT/);
    const badRestart = await corral(["pipelines", "create", "--name", "x", "--restart", "sometimes"], "{}");
    assert.notEqual(badRestart.code, 0);
    assert.match(badRestart.stderr, /--restart/);

    const ls = await corral(["pipelines", "ls"]);
    assert.equal(ls.code, 0, ls.stderr);
    assert.match(ls.stdout, /cli-guide/);
    assert.match(ls.stdout, /cli-stdin/);
    assert.doesNotMatch(ls.stdout, /cli-bad/);

    // A viewer may not read configs (argv, env) but still lists the pipelines and their run state.
    const viewerToken = (await corral(["token", "create", "--role", "viewer"])).stdout.trim();
    const asViewer = await corral([
      "--server",
      `127.0.0.1:${controller.clusterPort}`,
      "--token",
      viewerToken,
      "--ca",
      join(controller.dataDir, "ca", "ca.crt"),
      "pipelines",
      "ls",
    ]);
    assert.equal(asViewer.code, 0, asViewer.stderr);
    assert.match(asViewer.stdout, /cli-guide/);
    assert.match(asViewer.stdout, /cli-stdin/);

    const updated = await corral(["pipelines", "update", "cli-stdin", "--name", "cli-renamed", "--auto"]);
    assert.equal(updated.code, 0, updated.stderr);
    assert.match(updated.stdout, /name:\s+cli-renamed/);
    assert.match(updated.stdout, /startup:\s+auto/);
    assert.match(updated.stdout, /restart:\s+never/);
    const shownConfig = await corral(["pipelines", "show", "cli-renamed", "--config"]);
    assert.equal(JSON.parse(shownConfig.stdout).version, 13);
    assert.equal((await corral(["pipelines", "rm", "cli-renamed"])).code, 0);

    // Start by name: the run id is printed; telemetry -f follows the run to 5 000 packets.
    const started = await corral(["pipelines", "start", "cli-guide"]);
    assert.equal(started.code, 0, started.stderr);
    const runId = started.stdout.trim();
    assert.match(runId, /^run-/);
    const show = await corral(["pipelines", "show", runId]);
    assert.match(show.stdout, new RegExp(`id:\\s+${pipeline.id}`));

    let received = "";
    for (let i = 0; i < 40 && received !== "5000"; i++) {
      const telemetry = await corral(["pipelines", "telemetry", runId]);
      assert.equal(telemetry.code, 0, telemetry.stderr);
      received = /traffic_sink-1\.packets_received = (\d+)/.exec(telemetry.stdout)?.[1] ?? "";
      if (received !== "5000") await sleep(250);
    }
    assert.equal(received, "5000");
    const final = await corral(["pipelines", "telemetry", runId]);
    assert.match(final.stdout, /traffic_sink-1\.lost = 0\n/);

    // The run completes by itself; ls and show give its state, exit status and restarts.
    let shown = "";
    for (let i = 0; i < 40 && !/run state:\s+succeeded/.test(shown); i++) {
      shown = (await corral(["pipelines", "show", "cli-guide"])).stdout;
      if (!/run state:\s+succeeded/.test(shown)) await sleep(250);
    }
    assert.match(shown, new RegExp(`last run:\\s+${runId}`));
    assert.match(shown, /run state:\s+succeeded/);
    assert.match(shown, /exit:\s+code 0: completed/);
    assert.match(shown, /restarts:\s+0/);
    const listed = await corral(["pipelines", "ls"]);
    assert.match(listed.stdout, /\bSTATE\b.*\bEXIT\b.*\bRESTARTS\b/);
    assert.match(listed.stdout, new RegExp(`cli-guide .*${runId}\\s+succeeded\\s+code 0: completed\\s+0`));
    const listedJson = JSON.parse((await corral(["-o", "json", "pipelines", "ls"])).stdout) as {
      name: string;
      run?: { runId: string; state: string; exitCode: number; restarts?: number };
    }[];
    const guideRun = listedJson.find((p) => p.name === "cli-guide")?.run;
    assert.equal(guideRun?.runId, runId);
    assert.equal(guideRun?.state, "PIPELINE_RUN_STATE_SUCCEEDED");

    const logs = await corral(["pipelines", "logs", runId]);
    assert.equal(logs.code, 0, logs.stderr);
    assert.match(logs.stdout, /run started: 2 blocks, 1 links/);
    const jsonLogs = await corral(["-o", "json", "pipelines", "logs", runId, "-n", "1"]);
    assert.equal(jsonLogs.stdout.trim().split("\n").length, 1);

    // A slow one to follow and stop.
    await writeFile(file, guideConfig.replace('"interval": 25', '"interval": 2000'));
    assert.equal((await corral(["pipelines", "update", "cli-guide", "--config", file])).code, 0);
    const run2 = (await corral(["pipelines", "start", "cli-guide"])).stdout.trim();
    assert.match(run2, /^run-/);
    const following = corral(["pipelines", "logs", "-f", "cli-guide"]);
    await sleep(1500);
    const stopped = await corral(["pipelines", "stop", "cli-guide"]);
    assert.equal(stopped.code, 0, stopped.stderr);
    const followed = await following;
    assert.equal(followed.code, 0, followed.stderr);
    assert.match(followed.stdout, /run stopped/);
    const afterStop = await corral(["-o", "json", "pipelines", "show", "cli-guide"]);
    assert.notEqual(JSON.parse(afterStop.stdout).started, true); // proto3 JSON omits false

    const unknownNode = await corral(["pipelines", "ls", "--node", "no-such-node"]);
    assert.notEqual(unknownNode.code, 0);
    assert.match(unknownNode.stderr, /NOT_FOUND/);

    assert.equal((await corral(["pipelines", "rm", pipeline.id])).code, 0);
    assert.doesNotMatch((await corral(["pipelines", "ls"])).stdout, /cli-guide/);
  });

  it("sets performance_mode and cpu_pin; a run without a pin shows the CPU the node chose", {
    timeout: 60_000,
  }, async () => {
    const created = await corral(
      ["pipelines", "create", "--name", "cli-gentle", "--performance-mode", "off"],
      guideConfig,
    );
    assert.equal(created.code, 0, created.stderr);
    assert.match(created.stdout, /performance mode:\s+false/);
    const started = await corral(["pipelines", "start", "cli-gentle"]);
    assert.equal(started.code, 0, started.stderr);
    let shown = "";
    for (let i = 0; i < 100 && !/cpu pin:\s+\d+ \(applied: chosen automatically/.test(shown); i++) {
      shown = (await corral(["pipelines", "show", "cli-gentle"])).stdout;
      if (!/cpu pin:\s+\d/.test(shown)) await sleep(100);
    }
    assert.match(shown, /cpu pin:\s+\d+ \(applied: chosen automatically/);

    const updated = await corral([
      "pipelines",
      "update",
      "cli-gentle",
      "--performance-mode",
      "on",
      "--cpu-pin",
      "0",
    ]);
    assert.equal(updated.code, 0, updated.stderr);
    assert.match(updated.stdout, /performance mode:\s+true/);
    const bad = await corral(["pipelines", "update", "cli-gentle", "--performance-mode", "fast"]);
    assert.notEqual(bad.code, 0);
    assert.match(bad.stderr, /--performance-mode: "fast" is not on or off/);
    assert.equal((await corral(["pipelines", "rm", "cli-gentle"])).code, 0);
  });
});
