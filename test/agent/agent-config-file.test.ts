import assert from "node:assert/strict";
import { existsSync } from "node:fs";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { eventually, nodeToken } from "../helpers/agent.ts";
import { startTestController, type TestController } from "../helpers/controller.ts";
import { CorralProcesses } from "../helpers/corral-processes.ts";

/** `corral up --config agent.yaml`, as real `bin/corral.js up` processes against a real controller. */
describe("corral up --config (the agent's YAML)", { timeout: 120_000 }, () => {
  let dir: string;
  let cluster: TestController;
  const processes = new CorralProcesses();

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), "corral-agent-config-"));
    cluster = await startTestController();
  });
  after(async () => {
    await processes.killAll();
    await cluster?.close();
    if (dir !== undefined) await rm(dir, { recursive: true, force: true });
  });

  const agentFile = async (name: string, lines: string[]) => {
    const file = join(dir, `${name}.yaml`);
    await writeFile(file, `${lines.join("\n")}\n`, { mode: 0o600 });
    return file;
  };
  const joinedFile = async (name: string, extra: string[] = []) =>
    agentFile(name, [
      "name: from-file",
      "grpc: 127.0.0.1:0",
      "listen: 127.0.0.1:0",
      `dataDir: ${name}-data`,
      `join: 127.0.0.1:${cluster.clusterPort}`,
      `token: ${await nodeToken(cluster)}`,
      "logLevel: warn",
      "labels:",
      "  zone: from-file",
      "  rack: 7",
      ...extra,
    ]);
  const readyNode = (name: string) =>
    eventually(
      async () => {
        const node = await cluster.controller.context.registry.get(name);
        return node.status === "ready" ? node : undefined;
      },
      30_000,
      `${name} ready on the controller`,
    );

  it("refuses an unknown key with exit 2 and names it, before starting anything", async () => {
    const file = await agentFile("unknown", ["name: x", "listen: 127.0.0.1:0", "lables:", "  zone: a"]);
    const proc = processes.start(["up", "--config", file]);
    const exit = await proc.stop("SIGCONT", 30_000);
    assert.equal(exit.code, 2, proc.stderr());
    assert.match(proc.stderr(), /lables: is not a known key/);
    assert.equal(proc.stdout(), "", "no agent banner: nothing was started");
  });

  it("refuses a bad value by its key (a duration or address the schema cannot read)", async () => {
    const file = await agentFile("bad", ["grpc: not-an-address"]);
    const proc = processes.start(["up", "--config", file]);
    const exit = await proc.stop("SIGCONT", 30_000);
    assert.equal(exit.code, 2, proc.stderr());
    assert.match(proc.stderr(), /grpc: /);
  });

  it("takes the node's name, labels, data dir and join from the file", async () => {
    const proc = processes.start(["up", "--config", await joinedFile("plain")]);
    await proc.waitForOutput(/corral agent "from-file"/);
    const node = await readyNode("from-file");
    assert.equal(node.labels.zone, "from-file");
    assert.equal(node.labels.rack, "7");
    assert.ok(existsSync(join(dir, "plain-data")), "dataDir is relative to the file");
    const exit = await proc.stop("SIGTERM", 20_000);
    assert.equal(exit.code, 0, proc.stderr());
    await cluster.controller.context.registry.remove("from-file");
  });

  it("lets flags win over the file: --name, --label (merged by key), --grpc", async () => {
    const proc = processes.start([
      "up",
      "--config",
      await joinedFile("flags"),
      "--name",
      "from-flag",
      "--label",
      "zone=from-flag",
      "--grpc",
      "127.0.0.1:0",
    ]);
    await proc.waitForOutput(/corral agent "from-flag"/);
    const node = await readyNode("from-flag");
    assert.equal(node.labels.zone, "from-flag", "the flag's label wins");
    assert.equal(node.labels.rack, "7", "the file's other labels stay");
    await assert.rejects(cluster.controller.context.registry.get("from-file"), /not|no node/i);
    const exit = await proc.stop("SIGTERM", 20_000);
    assert.equal(exit.code, 0, proc.stderr());
  });
});
