import assert from "node:assert/strict";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { CorralProcesses, runCorral as corralExit } from "../helpers/corral-processes.ts";

describe("corral CLI", () => {
  let dir: string;
  const processes = new CorralProcesses();
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), "corral-cli-"));
  });
  after(async () => {
    await processes.killAll();
    await rm(dir, { recursive: true, force: true });
  });

  it("exits 2 and names the key when the config is wrong", async () => {
    const file = join(dir, "bad.yaml");
    await writeFile(file, "node:\n  name: x\nhttp:\n  adress: 127.0.0.1:1\n");
    const result = await corralExit(["controller", "--config", file]);
    assert.equal(result.code, 2);
    assert.match(result.stderr, /http\.adress: is not a known key/);
  });

  it("exits 2 on an unknown command or option", async () => {
    assert.equal((await corralExit(["frobnicate"])).code, 2);
    assert.equal((await corralExit(["nodes", "ls", "--colour"])).code, 2);
  });

  it("exits 3 when no controller answers", async () => {
    const result = await corralExit(["--server", "127.0.0.1:1", "status"]);
    assert.equal(result.code, 3);
    assert.match(result.stderr, /cannot reach the controller at 127\.0\.0\.1:1/);
  });

  it("runs a controller, talks to it, and drains it on SIGTERM", async () => {
    const file = join(dir, "corral.yaml");
    await writeFile(
      file,
      [
        "node:",
        "  name: CLI Controller",
        "http:",
        "  address: 127.0.0.1:0",
        "grpcBridge:",
        "  address: 127.0.0.1:0",
        "web:",
        "  address: 127.0.0.1:0",
        `dataDir: ${join(dir, "data")}`,
        "shutdownGrace: 2s",
        "",
      ].join("\n"),
    );
    const controller = processes.start(["controller", "--config", file, "--log-level", "warn"]);
    const banner = await controller.waitForOutput(/bridge \(gRPC, h2c\)\s+(\S+)/);
    const bridge = banner[1] ?? "";
    const listed = await corralExit(["--server", bridge, "-o", "json", "nodes", "ls"]);
    assert.equal(listed.code, 0, listed.stderr);
    const json = JSON.parse(listed.stdout) as { nodes: { name: string; status: string }[] };
    assert.deepEqual(
      json.nodes.map((n) => [n.name, n.status]),
      [["CLI Controller", "NODE_STATUS_READY"]],
    );
    const missing = await corralExit(["--server", bridge, "nodes", "get", "nobody"]);
    assert.equal(missing.code, 1);
    assert.match(missing.stderr, /NOT_FOUND: node "nobody" not found/);
    assert.deepEqual(await controller.stop("SIGTERM"), { code: 0, signal: null }, controller.stderr());
  });
});
