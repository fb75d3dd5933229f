import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { describe, it } from "node:test";
import { fileURLToPath } from "node:url";
import { etcdMissing } from "../helpers/etcd.ts";

const fixture = fileURLToPath(new URL("./fixtures/outage-then-close.ts", import.meta.url));

describe("closing after an etcd outage", { skip: etcdMissing() }, () => {
  it("leaves nothing behind: the process exits by itself once its controllers are closed", async () => {
    const child = spawn(process.execPath, ["--import", "tsx", fixture], {
      stdio: ["ignore", "pipe", "pipe"],
    });
    let stdout = "";
    let stderr = "";
    let closedAt: number | undefined;
    child.stdout.on("data", (chunk: Buffer) => {
      stdout += chunk.toString("utf8");
      if (closedAt === undefined && stdout.includes("closed\n")) closedAt = Date.now();
    });
    child.stderr.on("data", (chunk: Buffer) => {
      stderr = (stderr + chunk.toString("utf8")).slice(-4_000);
    });
    // Bounded either way: a process kept alive by a leaked timer is killed and the test fails.
    const limit = setTimeout(() => child.kill("SIGKILL"), 120_000);
    const watchdog = setInterval(() => {
      if (closedAt !== undefined && Date.now() - closedAt > 20_000) child.kill("SIGKILL");
    }, 500);
    const [code, signal] = await new Promise<[number | null, NodeJS.Signals | null]>((resolve) =>
      child.once("exit", (c, s) => resolve([c, s])),
    );
    clearTimeout(limit);
    clearInterval(watchdog);
    assert.ok(closedAt !== undefined, `the fixture did not finish: ${stdout}\n${stderr}`);
    assert.equal(signal, null, `killed: it did not exit within 20 s of closing\n${stdout}`);
    assert.equal(code, 0, stderr);
    assert.doesNotMatch(stdout, /still alive/);
  });
});
