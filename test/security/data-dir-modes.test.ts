import assert from "node:assert/strict";
import { chmod, mkdir, mkdtemp, rm, stat } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { joinWithToken, startTestAgent, type TestAgent } from "../helpers/agent.ts";
import { startTestController, type TestController } from "../helpers/controller.ts";

/**
 * The CA key, node keys and the store must be unreadable to anything a pipeline run or provisioning
 * step starts as another user: data dirs 0700, key files 0600 — also a dir that was made looser
 * before (by hand, a restore, an older version), tightened when the controller or agent starts.
 */

const modeOf = async (path: string) => ((await stat(path)).mode & 0o777).toString(8);

describe("data dirs and keys are private to corral's user", () => {
  let root: string;
  let cluster: TestController | undefined;
  let agent: TestAgent | undefined;
  before(async () => {
    root = await mkdtemp(join(tmpdir(), "corral-modes-"));
  });
  after(async () => {
    await agent?.close();
    await cluster?.close();
    await rm(root, { recursive: true, force: true });
  });

  it("the controller tightens its data dir, the CA dir and the keys at start", {
    timeout: 60_000,
  }, async () => {
    const dataDir = join(root, "controller");
    // Made by hand, readable by everyone, before the first start.
    await mkdir(dataDir, { mode: 0o755 });
    await chmod(dataDir, 0o755);
    cluster = await startTestController({}, {}, dataDir, false);
    assert.equal(await modeOf(dataDir), "700");
    assert.equal(await modeOf(join(dataDir, "ca", "ca.key")), "600");
    assert.equal(await modeOf(join(dataDir, "admin", "client.key")), "600");
    await cluster.close();
    cluster = undefined;

    // Loosened while it was stopped (a restore, a careless chmod -R): tightened again at the next start.
    await chmod(dataDir, 0o755);
    await chmod(join(dataDir, "ca"), 0o755);
    await chmod(join(dataDir, "ca", "ca.key"), 0o644);
    await chmod(join(dataDir, "admin"), 0o755);
    await chmod(join(dataDir, "admin", "client.key"), 0o644);
    await chmod(join(dataDir, "corral.db"), 0o644);
    cluster = await startTestController({}, {}, dataDir, false);
    assert.equal(await modeOf(dataDir), "700");
    assert.equal(await modeOf(join(dataDir, "ca")), "700");
    assert.equal(await modeOf(join(dataDir, "ca", "ca.key")), "600");
    assert.equal(await modeOf(join(dataDir, "admin")), "700");
    assert.equal(await modeOf(join(dataDir, "admin", "client.key")), "600");
    assert.equal(await modeOf(join(dataDir, "corral.db")), "600");
  });

  it("the agent tightens its data dir and its key at start", { timeout: 60_000 }, async () => {
    assert.ok(cluster, "the controller of the test before");
    const dataDir = join(root, "agent");
    await mkdir(dataDir, { mode: 0o755 });
    await chmod(dataDir, 0o755);
    agent = await startTestAgent({ name: "modes-agent", dataDir });
    assert.equal(await modeOf(dataDir), "700");
    await joinWithToken(cluster, agent);
    assert.equal(await modeOf(join(dataDir, "node.key")), "600");
    await agent.close();
    agent = undefined;

    await chmod(dataDir, 0o755);
    await chmod(join(dataDir, "node.key"), 0o644);
    await chmod(join(dataDir, "identity.json"), 0o644);
    agent = await startTestAgent({ name: "modes-agent", dataDir });
    assert.equal(await modeOf(dataDir), "700");
    assert.equal(await modeOf(join(dataDir, "node.key")), "600");
    assert.equal(await modeOf(join(dataDir, "identity.json")), "600");
  });
});
