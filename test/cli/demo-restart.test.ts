import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { mkdtemp, rm } from "node:fs/promises";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, describe, it } from "node:test";
import { promisify } from "node:util";
import { HubClientService } from "../../src/gen/hub_client_pb.ts";
import { plaintextClient } from "../helpers/clients.ts";
import { CorralProcesses, corralBin } from "../helpers/corral-processes.ts";

/**
 * `npm start` a second time on the same data dir: the store says every agent is "ready" before any of
 * them runs again. The demo must print "ready" only for agents heard from since this controller
 * started (so each answers at once after "cluster is up"), and `corral status` must not count a node
 * it has not heard from since it started as ready.
 */

const run = promisify(execFile);

/** Whether 127.0.0.1:port can be bound now. */
function free(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const server = createServer();
    server.once("error", () => resolve(false));
    server.listen(port, "127.0.0.1", () => server.close(() => resolve(true)));
  });
}

/** A `--port-base` whose every demo port (base, +1, +2, +10.., +30..) is free: bounded tries. */
async function freePortBase(agents: number): Promise<number> {
  for (let attempt = 0; attempt < 50; attempt++) {
    // Below the kernel's ephemeral range, so outgoing connections do not take them meanwhile.
    const base = 20_000 + Math.floor(Math.random() * 10_000);
    const ports = [base, base + 1, base + 2];
    for (let i = 0; i < agents; i++) ports.push(base + 10 + i, base + 30 + i);
    if ((await Promise.all(ports.map(free))).every(Boolean)) return base;
  }
  throw new Error("no free port range for the demo");
}

describe("npm start twice on the same data dir", { timeout: 240_000 }, () => {
  const processes = new CorralProcesses();
  let dir: string | undefined;
  after(async () => {
    await processes.killAll();
    if (dir !== undefined) await rm(dir, { recursive: true, force: true });
  });

  it("says ready only for agents heard since the controller started; each then answers at once", async () => {
    dir = await mkdtemp(join(tmpdir(), "corral-demo-restart-"));
    const base = await freePortBase(2);
    const demo = (agents: number) =>
      processes.start([
        "demo",
        "--data-dir",
        dir as string,
        "--agents",
        String(agents),
        "--port-base",
        String(base),
      ]);
    const up = /Ctrl-C stops the cluster/;

    // First start: the agents join and are heard.
    const first = demo(2);
    await first.waitForOutput(up, 90_000);
    assert.match(first.stdout(), /agent-1 .* ready\n/);
    assert.match(first.stdout(), /agent-2 .* ready\n/);
    const firstExit = await first.stop("SIGTERM", 30_000);
    assert.equal(
      firstExit.code,
      0,
      `the demo ended ${JSON.stringify(firstExit)}: ${first.stderr().slice(-2000)}`,
    );

    // The controller alone: the store still says both agents are ready; neither runs.
    const alone = demo(0);
    await alone.waitForOutput(up, 90_000);
    const status = await run(process.execPath, [corralBin, "--server", `127.0.0.1:${base + 1}`, "status"], {
      timeout: 60_000,
    });
    const nodes =
      /nodes\s+(\d+) total: (\d+) ready, (?:(\d+) not heard from since this controller started, )?/.exec(
        status.stdout,
      );
    assert.ok(nodes !== null, status.stdout);
    assert.equal(nodes[1], "3", status.stdout);
    // Only the controller's own node; the agents are not up (still in their grace period, or suspect).
    assert.equal(nodes[2], "1", status.stdout);
    assert.match(status.stdout, /2 not heard from since this controller started|2 suspect|suspect, 2 down/);
    assert.equal((await alone.stop("SIGTERM", 30_000)).code, 0);

    // Second full start: "ready" only once heard, and then each agent's local API answers right away.
    const second = demo(2);
    await second.waitForOutput(up, 90_000);
    for (const [i, name] of ["agent-1", "agent-2"].entries()) {
      assert.match(second.stdout(), new RegExp(`${name} .* ready\\n`));
      const reply = await plaintextClient(HubClientService, base + 30 + i).getLocalNodeId({});
      assert.ok(reply.nodeId !== "", `${name} has a node id`);
    }
    assert.equal((await second.stop("SIGTERM", 30_000)).code, 0);
  });
});
