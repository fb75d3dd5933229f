import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { eventually, joinWithToken, startTestAgent, type TestAgent } from "../helpers/agent.ts";
import { startTestController, type TestController } from "../helpers/controller.ts";
import { CorralProcesses, cleanCorralEnv, runCorral as corralRun } from "../helpers/corral-processes.ts";

describe("corral health / metrics / gpio / exec / logs, through the controller", () => {
  let cluster: TestController;
  let node: TestAgent;
  let server: string[];
  const processes = new CorralProcesses();
  before(async () => {
    cluster = await startTestController();
    node = await startTestAgent({ name: "pi-cli" });
    await joinWithToken(cluster, node);
    server = ["--server", `127.0.0.1:${cluster.bridgePort}`];
  });
  after(async () => {
    await processes.killAll();
    await node.close();
    await cluster.close();
  });

  it("blinks a pin: set high, read it back, set low", async () => {
    const high = await corralRun([...server, "gpio", "set", "18", "high", "--node", "pi-cli"]);
    assert.equal(high.code, 0, high.stderr);
    assert.match(high.stdout, /pin 18 is HIGH \(simulated\)/);
    const read = await corralRun([...server, "-o", "json", "gpio", "get", "18", "--node", "pi-cli"]);
    assert.equal(JSON.parse(read.stdout).state, "HIGH");
    const low = await corralRun([...server, "gpio", "set", "18", "low", "--node", "pi-cli"]);
    assert.match(low.stdout, /pin 18 is LOW/);
    const bad = await corralRun([...server, "gpio", "set", "18", "sideways", "--node", "pi-cli"]);
    assert.equal(bad.code, 2);
  });

  it("shows health and metrics of a node", async () => {
    const health = await corralRun([...server, "health", "--node", "pi-cli"]);
    assert.equal(health.code, 0, health.stderr);
    assert.match(health.stdout, /status:\s+OK/);
    const metrics = await corralRun([...server, "-o", "json", "metrics", "--node", "pi-cli"]);
    const parsed = JSON.parse(metrics.stdout) as { cpuUsage?: number; memoryTotalBytes: string };
    assert.ok(Number(parsed.memoryTotalBytes) > 0);
  });

  it("runs an allow-listed command with the node's exit code, and refuses a shell", async () => {
    const uname = await corralRun([...server, "exec", "--node", "pi-cli", "--", "uname", "-a"]);
    assert.equal(uname.code, 0, uname.stderr);
    assert.match(uname.stdout, /Linux/);
    const shell = await corralRun([...server, "exec", "--node", "pi-cli", "--", "sh", "-c", "id"]);
    assert.equal(shell.code, 1);
    assert.match(shell.stderr, /PERMISSION_DENIED/);
  });

  it("follows the node's own log until stopped", async () => {
    const follow = processes.start(
      [...server, "logs", "-f", "-n", "0", "--node", "pi-cli"],
      cleanCorralEnv(),
    );
    try {
      // The agent's log ring is what its logger feeds; write lines the way the agent logs them, until the
      // CLI (which needs a moment to start) shows one written after it began to follow.
      const marker = `marker-${Date.now()}`;
      await eventually(
        async () => {
          node.agent.logRing.write("info", marker);
          return follow.stdout().includes(marker) ? true : undefined;
        },
        20_000,
        "the new log line",
      );
    } finally {
      await follow.stop("SIGINT");
    }
  });
});
