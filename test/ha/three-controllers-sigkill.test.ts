import assert from "node:assert/strict";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { timestampDate } from "@bufbuild/protobuf/wkt";
import { ClusterService } from "../../src/gen/corral/v1/cluster_pb.ts";
import { ModelEventType, ModelsService } from "../../src/gen/corral/v1/models_pb.ts";
import { NodeStatus, NodesService } from "../../src/gen/corral/v1/nodes_pb.ts";
import { TokensService } from "../../src/gen/corral/v1/tokens_pb.ts";
import { ControlPlane } from "../../src/gen/picontroller_pb.ts";
import { writeSealingKey } from "../../src/security/ca-key-file.ts";
import { eventually } from "../helpers/agent.ts";
import { plaintextClient } from "../helpers/clients.ts";
import { type ControllerProcess, CorralProcesses, startAgentProcess } from "../helpers/corral-processes.ts";
import { etcdMissing, startTestEtcd, type TestEtcd } from "../helpers/etcd.ts";
import { startEtcdControllerProcess } from "./ha-processes.ts";

const missing = etcdMissing();

interface Member {
  readonly name: string;
  readonly proc: ControllerProcess;
}

const status = (m: Member) =>
  plaintextClient(ClusterService, m.proc.bridgePort).getClusterStatus({}, { timeoutMs: 2_000 });

/** Model events (revision, type, name) from `fromRevision` on, until every name in `names` was seen. */
async function feed(
  m: Member,
  fromRevision: bigint,
  names: ReadonlySet<string>,
  throughRevision: bigint,
): Promise<string[]> {
  const seen = new Set<string>();
  const events: string[] = [];
  const signal = AbortSignal.timeout(20_000);
  for await (const event of plaintextClient(ModelsService, m.proc.bridgePort).watchModels(
    { fromRevision },
    { signal },
  )) {
    if (event.type !== ModelEventType.PUT && event.type !== ModelEventType.DELETED) continue;
    if (event.revision > throughRevision) break;
    events.push(`${event.revision} ${ModelEventType[event.type]} ${event.model?.name}`);
    if (event.model !== undefined) seen.add(event.model.name);
    if ([...names].every((name) => seen.has(name))) break;
  }
  return events;
}

describe("three controllers on one etcd, the leader SIGKILLed under writes", { skip: missing }, () => {
  const processes = new CorralProcesses();
  let etcd: TestEtcd;
  let dir: string;
  const members: Member[] = [];

  before(async () => {
    etcd = await startTestEtcd();
    dir = await mkdtemp(join(tmpdir(), "corral-ha3-"));
    const keyFile = join(dir, "ca.key");
    await writeSealingKey(keyFile);
    for (const name of ["ctl-1", "ctl-2", "ctl-3"]) {
      const home = await mkdtemp(join(dir, `${name}-`));
      const proc = await startEtcdControllerProcess(processes, home, {
        name,
        endpoint: etcd.endpoint,
        keyFile,
        leaseTtl: "2s",
        lastSeenFlush: "250ms",
        liveness: { minInterval: "1s", downAfter: "5s" },
      });
      members.push({ name, proc });
    }
  });
  after(async () => {
    await processes.killAll();
    await etcd?.stop();
    if (dir !== undefined) await rm(dir, { recursive: true, force: true });
  });

  it("elects a new leader within 5 s, loses no acknowledged write, keeps one event order, reconnects agents", async (t) => {
    const leaderName = await eventually(
      async () => {
        const answers = await Promise.all(members.map((m) => status(m)));
        const leaders = new Set(answers.map((a) => a.leader).filter((l) => l !== ""));
        return leaders.size === 1 && answers.filter((a) => a.isLeader).length === 1
          ? [...leaders][0]
          : undefined;
      },
      15_000,
      "one leader that every controller names",
    );
    const leader = members.find((m) => m.name === leaderName) as Member;
    const survivors = members.filter((m) => m !== leader);
    const every = await status(survivors[0] as Member);
    assert.deepEqual(
      every.controllers.map((c) => c.name),
      ["ctl-1", "ctl-2", "ctl-3"],
      "status lists every controller",
    );
    assert.equal(every.storeHealth?.healthy, true);

    // Two agents join through the leader first, with the others as fallbacks.
    const token = (await plaintextClient(TokensService, leader.proc.bridgePort).createToken({ uses: 10 }))
      .token;
    const joinList = [leader, ...survivors].map((m) => m.proc.cluster).join(",");
    for (const name of ["agent-1", "agent-2"]) {
      const home = await mkdtemp(join(dir, `${name}-`));
      await startAgentProcess(processes, home, ["--name", name, "--join", joinList, "--token", token]);
    }
    const readyOn = async (m: Member, after: number) => {
      const { nodes } = await plaintextClient(NodesService, m.proc.bridgePort).listNodes({});
      return ["agent-1", "agent-2"].every((name) => {
        const node = nodes.find((n) => n.name === name);
        return (
          node?.status === NodeStatus.READY &&
          node.lastSeenAt !== undefined &&
          timestampDate(node.lastSeenAt).getTime() > after
        );
      });
    };
    await eventually(async () => ((await readyOn(leader, 0)) ? true : undefined), 20_000, "agents ready");

    // Writers through all three controllers; a write counts once its answer arrived.
    const start = (await plaintextClient(ModelsService, leader.proc.bridgePort).listModels({})).revision;
    const acknowledged = new Set<string>();
    const failures: string[] = [];
    let writing = true;
    const writer = async (m: Member) => {
      const client = plaintextClient(ModelsService, m.proc.bridgePort);
      for (let i = 0; writing && i < 5_000; i++) {
        const name = `w-${m.name}-${i}`;
        try {
          await client.addModel({ name, version: "1", layerCount: 1 }, { timeoutMs: 5_000 });
          acknowledged.add(name);
        } catch (error) {
          failures.push(`${name}: ${(error as Error).message}`);
          if (m.proc.process.exited) return;
          await new Promise((resolve) => setTimeout(resolve, 50));
        }
      }
    };
    const writers = members.map((m) => writer(m));
    await eventually(async () => (acknowledged.size >= 30 ? true : undefined), 20_000, "writes flowing");

    const killedAt = Date.now();
    await leader.proc.process.stop("SIGKILL");
    const newLeader = await eventually(
      async () => {
        for (const m of survivors) {
          const s = await status(m).catch(() => undefined);
          if (s?.isLeader && s.leader === m.name) return m;
        }
        return undefined;
      },
      15_000,
      "a new leader",
    );
    const failoverMs = Date.now() - killedAt;
    assert.ok(failoverMs < 5_000, `a new leader (${newLeader.name}) took ${failoverMs} ms`);
    t.diagnostic(`new leader ${newLeader.name} ${failoverMs} ms after SIGKILL of ${leader.name}`);

    // Agents that talked to the dead leader carry on with a survivor: ready, and heard after the kill.
    await eventually(
      async () =>
        (await Promise.all(survivors.map((m) => readyOn(m, killedAt)))).every(Boolean) ? true : undefined,
      20_000,
      "agents heartbeating to a survivor",
    );
    // The dead controller's own node goes down: its presence lease is gone.
    await eventually(
      async () => {
        const { nodes } = await plaintextClient(NodesService, newLeader.proc.bridgePort).listNodes({});
        return nodes.find((n) => n.name === leader.name)?.status === NodeStatus.DOWN ? true : undefined;
      },
      20_000,
      "the dead controller's node down",
    );
    const acknowledgedBeforeStop = acknowledged.size;
    await eventually(
      async () => (acknowledged.size >= acknowledgedBeforeStop + 20 ? true : undefined),
      20_000,
      "writes through the survivors after the failover",
    );
    writing = false;
    await Promise.all(writers);

    // No acknowledged write lost, on either survivor.
    const lists = await Promise.all(
      survivors.map((m) => plaintextClient(ModelsService, m.proc.bridgePort).listModels({})),
    );
    for (const [i, list] of lists.entries()) {
      const names = new Set(list.models.map((model) => model.name));
      const lost = [...acknowledged].filter((name) => !names.has(name));
      assert.deepEqual(lost, [], `${survivors[i]?.name} lost acknowledged writes`);
    }
    let through = 0n;
    for (const list of lists) if (list.revision > through) through = list.revision;
    const present = new Set((lists[0]?.models ?? []).map((model) => model.name));

    // One order of events on every survivor.
    const [first, second] = await Promise.all(survivors.map((m) => feed(m, start + 1n, present, through)));
    assert.ok((first?.length ?? 0) >= acknowledged.size, "the feed carries every write");
    assert.deepEqual(second, first, "the survivors' event feeds differ");
    t.diagnostic(
      `${acknowledged.size} writes acknowledged, ${failures.length} failed (not acknowledged), ${first?.length} events in one order`,
    );

    // SyncClusterState: the same snapshot from both survivors (nodes as stored, the elected leader).
    const snapshots = await Promise.all(
      survivors.map(async (m) => {
        const state = await plaintextClient(ControlPlane, m.proc.bridgePort).syncClusterState({});
        return {
          leader: state.leader,
          nodes: state.nodes.map((n) => `${n.nodeId} ${n.name} ${n.status} ${n.lastSeen}`).sort(),
        };
      }),
    );
    assert.deepEqual(snapshots[0], snapshots[1]);
    assert.equal(snapshots[0]?.leader, newLeader.name);
    const after = await status(newLeader);
    assert.equal(
      after.controllers.some((c) => c.name === leader.name),
      false,
      "the dead leader left the list of controllers",
    );
  });
});
