/**
 * Death detection by the end of the heartbeat stream (issue #21): real `corral up` processes against a
 * real controller whose missed-heartbeat path is made slow on purpose (suspect only after 60 missed 1 s
 * heartbeats), so that a node marked suspect and down within these bounded waits was found by its
 * stream ending — a killed process, or a frozen one whose connection keepalive gave up on.
 */
import assert from "node:assert/strict";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { NodeEventType, NodeStatus, NodesService } from "../../src/gen/corral/v1/nodes_pb.ts";
import { eventually, nodeToken } from "../helpers/agent.ts";
import { plaintextClient } from "../helpers/clients.ts";
import { startTestController, type TestController } from "../helpers/controller.ts";
import { CorralProcesses, startAgentProcess } from "../helpers/corral-processes.ts";

describe("death detection by the end of the heartbeat stream", () => {
  let cluster: TestController;
  let dir: string;
  const processes = new CorralProcesses();
  const seen = new Map<string, string[]>();
  const watch = new AbortController();

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), "corral-stream-end-"));
    cluster = await startTestController({
      liveness: {
        minInterval: "1s",
        suspectAfterMissed: 60,
        downAfter: "5m",
        streamLostDownAfter: "1s",
        keepaliveTime: "1s",
        keepaliveTimeout: "1s",
      },
    });
    watchStatuses(cluster.bridgePort);
  });
  after(async () => {
    watch.abort();
    await processes.killAll();
    await cluster.close();
    await rm(dir, { recursive: true, force: true });
  });

  /** Every status each node went through, as `corral nodes watch` shows them (repeats folded). */
  function watchStatuses(bridgePort: number): void {
    const client = plaintextClient(NodesService, bridgePort);
    void (async () => {
      for await (const event of client.watchNodes({}, { signal: watch.signal })) {
        if (event.type !== NodeEventType.PUT && event.type !== NodeEventType.SNAPSHOT) continue;
        const name = event.node?.name ?? "";
        const status = NodeStatus[event.node?.status ?? 0] ?? "UNKNOWN";
        const list = seen.get(name) ?? [];
        if (list.at(-1) !== status) list.push(status);
        seen.set(name, list);
      }
    })().catch(() => undefined);
  }

  const statusesOf = (name: string) => seen.get(name) ?? [];
  const reaches = (name: string, status: string, what: string) =>
    eventually(async () => (statusesOf(name).at(-1) === status ? true : undefined), 20_000, what);

  /** An agent process that joined, and whose heartbeats now go on a stream. */
  async function agentOnStream(name: string) {
    const token = await nodeToken(cluster);
    const agent = await startAgentProcess(processes, join(dir, name), [
      "--name",
      name,
      "--join",
      `127.0.0.1:${cluster.clusterPort}`,
      "--token",
      token,
    ]);
    await reaches(name, "READY", `${name} ready`);
    // The first heartbeat is a call; the stream opens with the second.
    await eventually(
      async () => ((await cluster.controller.context.registry.get(name)).lastSeenAt > 0 ? true : undefined),
      10_000,
      `${name} heard`,
    );
    await new Promise((resolve) => setTimeout(resolve, 2_500));
    return agent;
  }

  it("marks a killed agent (kill -9) suspect, then down, long before any heartbeat is missed", async () => {
    const agent = await agentOnStream("killed");
    agent.process.child.kill("SIGKILL");
    await reaches("killed", "DOWN", "killed down");
    assert.deepEqual(statusesOf("killed"), ["READY", "SUSPECT", "DOWN"]);
  });

  it("marks a frozen agent (SIGSTOP, its socket open) suspect, then down, once keepalive gives up", async () => {
    const agent = await agentOnStream("frozen");
    agent.process.child.kill("SIGSTOP");
    try {
      await reaches("frozen", "DOWN", "frozen down");
      assert.deepEqual(statusesOf("frozen"), ["READY", "SUSPECT", "DOWN"]);
    } finally {
      agent.process.child.kill("SIGCONT");
    }
    // Thawed, it reconnects and is ready again.
    await reaches("frozen", "READY", "frozen ready again");
    await agent.process.stop("SIGKILL");
  });

  it("leaves an agent that stops cleanly (SIGTERM) ready: its stream ends with a goodbye", async () => {
    const agent = await agentOnStream("graceful");
    const exit = await agent.process.stop("SIGTERM");
    assert.equal(exit.code, 0, agent.process.stderr());
    // Three times the grace a lost stream gets: a lost stream would have made it suspect and down by now.
    await new Promise((resolve) => setTimeout(resolve, 3_000));
    assert.deepEqual(statusesOf("graceful"), ["READY"]);
  });

  it("marks no node down when the controller restarts under live agents", async () => {
    await agentOnStream("survivor");
    watch.abort();
    const restarted = await cluster.restart();
    cluster = restarted;
    const node = await cluster.controller.context.registry.get("survivor");
    assert.equal(node.status, "ready", "the old controller's streams ended with its shutdown, not the agent");
    await new Promise((resolve) => setTimeout(resolve, 3_000));
    const { nodes } = await cluster.controller.context.registry.list();
    // "killed" and "frozen" lost their processes to SIGKILL earlier; every other node must still be ready.
    assert.deepEqual(
      nodes
        .filter((n) => n.status === "suspect" || n.status === "down")
        .map((n) => n.name)
        .filter((name) => name !== "killed" && name !== "frozen"),
      [],
      "no node whose agent lives went suspect or down",
    );
    assert.equal((await cluster.controller.context.registry.get("killed")).status, "down");
  });
});
