import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { startTestController, type TestController } from "../helpers/controller.ts";
import { runCorral as corralRun } from "../helpers/corral-processes.ts";

describe("corral models (the CLI against a real controller)", () => {
  let cluster: TestController;
  const run = (...args: string[]) => corralRun(["--server", `127.0.0.1:${cluster.bridgePort}`, ...args]);

  before(async () => {
    // The nodes below never heartbeat: a long interval keeps them ready for the whole test. The
    // controller's own node holds no layers here, so capacity is exactly the two nodes'.
    cluster = await startTestController({ node: { maxLayers: 0 }, liveness: { minInterval: "10m" } });
    const registry = cluster.controller.context.registry;
    await registry.register({
      name: "gpu-1",
      address: "10.0.0.1:7444",
      status: "ready",
      resources: {
        cpuCores: 16,
        memoryMb: 65_536,
        maxLayers: 20,
        gpus: [{ name: "L4", memoryMb: 24_576, uuid: "GPU-1" }],
      },
    });
    await registry.register({
      name: "cpu-1",
      address: "10.0.0.2:7444",
      status: "ready",
      resources: { cpuCores: 8, memoryMb: 32_768, maxLayers: 40 },
    });
  });
  after(() => cluster?.close());

  it("adds, lists, assigns, shows, unassigns and removes a model", async () => {
    const added = await run(
      "models",
      "add",
      "llama-2-7b",
      "--version",
      "2",
      "--layers",
      "32",
      "--size",
      "13GB",
      "--path",
      "/models/llama-2-7b.gguf",
    );
    assert.equal(added.code, 0, added.stderr);
    assert.match(added.stdout, /^added model llama-2-7b \(id [0-9a-f-]{36}, 32 layers\): not assigned/);

    const assigned = await run("models", "assign", "llama-2-7b");
    assert.equal(assigned.code, 0, assigned.stderr);
    assert.equal(
      assigned.stdout,
      "llama-2-7b: placed: all 32 layers on 2 nodes: gpu-1 [0-19], cpu-1 [20-31]\n",
    );

    const ls = await run("models", "ls");
    assert.equal(ls.code, 0, ls.stderr);
    assert.match(ls.stdout, /^NAME\s+VERSION\s+LAYERS\s+STATE\s+SIZE\s+PLACEMENT$/m);
    assert.match(
      ls.stdout,
      /^llama-2-7b\s+2\s+32\/32\s+placed\s+12\.1 GiB\s+gpu-1 \[0-19\], cpu-1 \[20-31\]$/m,
    );

    const shown = await run("models", "show", "llama-2-7b");
    assert.equal(shown.code, 0, shown.stderr);
    assert.match(
      shown.stdout,
      /^placement:\n {2}gpu-1:\s+layers 0-19 \(20\)\n {2}cpu-1:\s+layers 20-31 \(12\)$/m,
    );
    assert.match(shown.stdout, /^file:\s+\/models\/llama-2-7b\.gguf$/m);

    const json = await run("-o", "json", "models", "ls");
    const parsed = JSON.parse(json.stdout) as {
      models: { name: string; state: string; assignments: { nodeName: string }[] }[];
    };
    assert.equal(parsed.models[0]?.state, "PLACEMENT_STATE_PLACED");
    assert.deepEqual(
      parsed.models[0]?.assignments.map((a) => a.nodeName),
      ["gpu-1", "cpu-1"],
    );

    // corral nodes show reads the same used_layers.
    const node = await run("nodes", "show", "gpu-1");
    assert.match(node.stdout, /^ {2}layers:\s+20 used of 20$/m);

    const unassigned = await run("models", "unassign", "llama-2-7b");
    assert.match(unassigned.stdout, /^llama-2-7b: not assigned/);
    const removed = await run("models", "rm", "llama-2-7b");
    assert.equal(removed.code, 0, removed.stderr);
    assert.match(removed.stdout, /^removed model llama-2-7b/);
    assert.equal((await run("models", "ls")).stdout, "NAME  VERSION  LAYERS  STATE  SIZE  PLACEMENT\n");
  });

  it("marks a model partially placed when capacity is short, with --assign at add", async () => {
    const big = await run("models", "add", "huge", "--layers", "100", "--assign");
    assert.equal(big.code, 0, big.stderr);
    assert.match(
      big.stdout,
      /partially placed: 60 of 100 layers on 2 nodes: gpu-1 \[0-19\], cpu-1 \[20-59\]; 40 layers wait for free capacity/,
    );
    await run("models", "rm", "huge");
  });

  it("exits 2 on a bad command line and 1 with the gRPC code on a failed call", async () => {
    const bad = await run("models", "add", "x", "--layers", "zero");
    assert.equal(bad.code, 2);
    assert.match(bad.stderr, /--layers/);
    const size = await run("models", "add", "x", "--layers", "3", "--size", "lots");
    assert.equal(size.code, 2);
    const missing = await run("models", "assign", "nope");
    assert.equal(missing.code, 1);
    assert.match(missing.stderr, /NOT_FOUND: model "nope" not found/);
    await run("models", "add", "twice", "--layers", "1");
    const again = await run("models", "add", "twice", "--layers", "1");
    assert.equal(again.code, 1);
    assert.match(again.stderr, /ALREADY_EXISTS/);
  });
});
