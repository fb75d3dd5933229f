import assert from "node:assert/strict";
import { execFile, execFileSync } from "node:child_process";
import { existsSync, realpathSync } from "node:fs";
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { shippedUnit } from "../../scripts/write-systemd-units.ts";
import { timeoutStopSec } from "../../src/cli/systemd-unit.ts";
import { priorityPrefix } from "../../src/observability/journal-stream.ts";
import { eventually, nodeToken } from "../helpers/agent.ts";
import { startTestController, type TestController } from "../helpers/controller.ts";
import {
  CorralProcesses,
  corralBin,
  startAgentProcess,
  startControllerProcess,
} from "../helpers/corral-processes.ts";

interface Result {
  code: number;
  stdout: string;
  stderr: string;
}

function corral(args: string[]): Promise<Result> {
  return new Promise((resolve) => {
    execFile(process.execPath, [corralBin, ...args], { timeout: 30_000 }, (error, stdout, stderr) => {
      resolve({
        code: error === null ? 0 : typeof error.code === "number" ? error.code : -1,
        stdout,
        stderr,
      });
    });
  });
}

const hasSystemdAnalyze = (() => {
  try {
    execFileSync("sh", ["-c", "command -v systemd-analyze"], { stdio: "ignore" });
    return true;
  } catch {
    return false;
  }
})();

describe("systemd units (corral service install / uninstall)", { timeout: 120_000 }, () => {
  let dir: string;
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), "corral-units-"));
  });
  after(async () => {
    if (dir !== undefined) await rm(dir, { recursive: true, force: true });
  });

  const directive = (unit: string, key: string) =>
    unit
      .split("\n")
      .filter((line) => line.startsWith(`${key}=`))
      .map((line) => line.slice(key.length + 1));

  for (const role of ["controller", "agent"] as const) {
    it(`prints the ${role}'s unit: sandbox, restart, stop within TimeoutStopSec, this corral in ExecStart`, async () => {
      // --unit-dir too, so that a --print that wrote after all would never touch /etc/systemd/system.
      const untouched = join(dir, `never-${role}`);
      const printed = await corral(["service", "install", role, "--print", "--unit-dir", untouched]);
      assert.equal(printed.code, 0, printed.stderr);
      assert.equal(existsSync(untouched), false, "--print writes nothing");
      const dry = await corral(["service", "install", role, "--dry-run", "--unit-dir", untouched]);
      assert.equal(dry.stdout, printed.stdout, "--dry-run is --print");
      assert.equal(existsSync(untouched), false, "--dry-run writes nothing");
      const unit = printed.stdout;
      assert.deepEqual(directive(unit, "Restart"), ["on-failure"]);
      assert.deepEqual(directive(unit, "StateDirectory"), ["corral"]);
      assert.deepEqual(directive(unit, "ProtectSystem"), ["strict"]);
      assert.deepEqual(directive(unit, "NoNewPrivileges"), ["yes"]);
      assert.deepEqual(directive(unit, "ReadWritePaths"), ["/var/lib/corral"]);
      assert.deepEqual(directive(unit, "KillSignal"), ["SIGTERM"]);
      assert.deepEqual(directive(unit, "TimeoutStopSec"), [`${timeoutStopSec}s`]);
      assert.deepEqual(directive(unit, "Type"), ["simple"]);
      const exec = directive(unit, "ExecStart")[0] ?? "";
      const verb = role === "controller" ? "controller" : "up";
      assert.equal(
        exec,
        `${process.execPath} ${realpathSync(corralBin)} ${verb} --data-dir /var/lib/corral/${role}`,
      );
      if (role === "agent") {
        assert.deepEqual(directive(unit, "DevicePolicy"), ["closed"]);
        for (const group of ["char-gpiochip rw", "char-spi rw", "char-i2c rw"])
          assert.ok(directive(unit, "DeviceAllow").includes(group), `DeviceAllow=${group}`);
      } else {
        assert.deepEqual(directive(unit, "DeviceAllow"), [], "the controller gets no device");
        assert.deepEqual(directive(unit, "PrivateDevices"), ["yes"]);
      }
    });
  }

  it("writes the unit with the config (absolute) and extra flags, then uninstalls it", async () => {
    const config = join(dir, "agent.yaml");
    await writeFile(config, "name: rack-7\n");
    const unitDir = join(dir, "units");
    const installed = await corral([
      "service",
      "install",
      "agent",
      "--config",
      config,
      "--unit-dir",
      unitDir,
      "--data-dir",
      join(dir, "agent-data"),
      "--no-start",
      "--",
      "--label",
      "zone=a b",
    ]);
    assert.equal(installed.code, 0, installed.stderr);
    const file = join(unitDir, "corral-agent.service");
    const unit = await readFile(file, "utf8");
    assert.match(
      directive(unit, "ExecStart")[0] ?? "",
      new RegExp(`up --config ${config} --data-dir ${join(dir, "agent-data")} --label "zone=a b"$`),
    );
    assert.deepEqual(directive(unit, "ReadWritePaths"), [`/var/lib/corral ${join(dir, "agent-data")}`]);
    const removed = await corral(["service", "uninstall", "agent", "--unit-dir", unitDir, "--no-stop"]);
    assert.equal(removed.code, 0, removed.stderr);
    assert.equal(existsSync(file), false);
    const again = await corral(["service", "uninstall", "agent", "--unit-dir", unitDir, "--no-stop"]);
    assert.notEqual(again.code, 0);
    assert.match(again.stderr, /does not exist: nothing to uninstall/);
  });

  it("refuses a config file that is not there, and writes nothing", async () => {
    const unitDir = join(dir, "refused");
    const result = await corral([
      "service",
      "install",
      "controller",
      "--config",
      join(dir, "missing.yaml"),
      "--unit-dir",
      unitDir,
      "--no-start",
    ]);
    assert.equal(result.code, 2, result.stderr);
    assert.match(result.stderr, /missing\.yaml is not a file/);
    assert.equal(existsSync(unitDir), false);
  });

  it("ships packaging/systemd/*.service as the generator writes them (no drift)", async () => {
    for (const role of ["controller", "agent"] as const) {
      const shipped = await readFile(
        join(import.meta.dirname, `../../packaging/systemd/corral-${role}.service`),
        "utf8",
      );
      assert.equal(
        shipped,
        shippedUnit(role),
        "run `node --import tsx scripts/write-systemd-units.ts` after changing src/cli/systemd-unit.ts",
      );
    }
  });

  it("generated units pass systemd-analyze verify", {
    skip: hasSystemdAnalyze ? false : "systemd-analyze is not on this machine (Debian: systemd)",
  }, async () => {
    const unitDir = join(dir, "verify");
    const config = join(dir, "any.yaml");
    await writeFile(config, "{}\n");
    for (const role of ["controller", "agent"]) {
      const written = await corral([
        "service",
        "install",
        role,
        "--config",
        config,
        "--unit-dir",
        unitDir,
        "--no-start",
      ]);
      assert.equal(written.code, 0, written.stderr);
      const verify = await new Promise<Result>((resolve) => {
        execFile(
          "systemd-analyze",
          ["verify", join(unitDir, `corral-${role}.service`)],
          { timeout: 30_000 },
          (error, stdout, stderr) =>
            resolve({ code: error === null ? 0 : Number(error.code ?? -1), stdout, stderr }),
        );
      });
      assert.equal(verify.code, 0, `${role}: ${verify.stderr}`);
      assert.doesNotMatch(verify.stderr, /corral-/, `${role}: systemd-analyze complained: ${verify.stderr}`);
    }
  });

  it("prefixes journal lines with their sd-daemon priority", () => {
    assert.equal(priorityPrefix('{"level":50,"msg":"x"}'), "<3>");
    assert.equal(priorityPrefix('{"level":40,"msg":"x"}'), "<4>");
    assert.equal(priorityPrefix('{"level":30,"msg":"x"}'), "<6>");
    assert.equal(priorityPrefix('{"level":20,"msg":"x"}'), "<7>");
  });
});

describe("SIGTERM stops both cleanly within TimeoutStopSec", { timeout: 120_000 }, () => {
  const processes = new CorralProcesses();
  let dir: string;
  let cluster: TestController;
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), "corral-sigterm-"));
    cluster = await startTestController();
  });
  after(async () => {
    await processes.killAll();
    await cluster?.close();
    if (dir !== undefined) await rm(dir, { recursive: true, force: true });
  });

  it("a controller exits 0", async () => {
    const controller = await startControllerProcess(processes, dir);
    const exit = await controller.process.stop("SIGTERM", timeoutStopSec * 1000);
    assert.deepEqual(exit, { code: 0, signal: null }, controller.process.stderr());
  });

  it("a joined agent exits 0", async () => {
    const agent = await startAgentProcess(processes, join(dir, "agent"), [
      "--join",
      `127.0.0.1:${cluster.clusterPort}`,
      "--token",
      await nodeToken(cluster),
      "--name",
      "sigterm-agent",
    ]);
    await eventually(
      async () =>
        (await cluster.controller.context.registry.get("sigterm-agent")).status === "ready"
          ? true
          : undefined,
      30_000,
      "sigterm-agent ready",
    );
    const exit = await agent.process.stop("SIGTERM", timeoutStopSec * 1000);
    assert.deepEqual(exit, { code: 0, signal: null }, agent.process.stderr());
  });
});
