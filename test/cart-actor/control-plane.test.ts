import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { mkdir, mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { fileURLToPath } from "node:url";
import { MembersService } from "../../src/gen/corral/v1/members_pb.ts";
import { NodeStatus } from "../../src/gen/corral/v1/nodes_pb.ts";
import { Role, TokensService } from "../../src/gen/corral/v1/tokens_pb.ts";
import { eventually } from "../helpers/agent.ts";
import { plaintextClient } from "../helpers/clients.ts";
import {
  type AgentProcess,
  type ControllerProcess,
  CorralProcesses,
  startAgentProcess,
  startControllerProcess,
} from "../helpers/corral-processes.ts";

/**
 * go-cart-actor's messages.ControlPlane against a running cluster — a `corral controller` and three
 * `corral up` agents, each its own process, joined by token — called from Python's C-core client with
 * stubs generated from the seed's proto (test/cart-actor/cart_actor_calls.py). Liveness is short, so a
 * killed agent is marked down within a second or two.
 */

const python = "/usr/bin/python3";
const script = fileURLToPath(new URL("./cart_actor_calls.py", import.meta.url));

interface Tls {
  ca: string;
  cert?: string;
  key?: string;
}
interface Call {
  target: string;
  method: "Ping" | "Negotiate" | "GetCartIds" | "ConfirmOwner" | "Closing";
  request?: Record<string, unknown>;
  tls?: Tls | null;
  timeout?: number;
}
interface CallResult {
  code: string;
  details?: string;
  response?: Record<string, unknown>;
}

function runCalls(calls: Call[]): Promise<{ results: CallResult[]; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = execFile(
      python,
      [script],
      { timeout: 90_000, killSignal: "SIGKILL", maxBuffer: 16 * 1024 * 1024 },
      (error, stdout, stderr) => {
        if (error !== null) {
          reject(new Error(`cart_actor_calls.py failed: ${error.message}\n${stderr}`));
          return;
        }
        try {
          resolve({ results: (JSON.parse(stdout) as { results: CallResult[] }).results, stderr });
        } catch {
          reject(new Error(`no JSON from cart_actor_calls.py:\n${stdout}\n${stderr}`));
        }
      },
    );
    child.stdin?.end(JSON.stringify(calls));
  });
}

const probe = await new Promise<string | undefined>((resolve) =>
  execFile(
    python,
    ["-c", "import grpc, grpc_tools.protoc, google.protobuf"],
    { timeout: 20_000 },
    (error, _o, stderr) =>
      resolve(error === null ? undefined : stderr.trim().split("\n").at(-1) || error.message),
  ),
);
const skip =
  probe === undefined
    ? false
    : `${python} cannot import grpc_tools (apt-get install python3-grpcio python3-grpc-tools python3-protobuf): ${probe}`;

describe("messages.ControlPlane on every member, from Python, against real corral processes", {
  skip,
}, () => {
  const processes = new CorralProcesses();
  let root: string;
  let controller: ControllerProcess;
  const agents: (AgentProcess & { listen: string })[] = [];
  let members: ReturnType<typeof plaintextClient<typeof MembersService>>;
  let admin: Required<Tls>;
  const keys = Array.from({ length: 600 }, (_, i) => `cart-${i}`);

  const hostOf = (agent: number) => agents[agent - 1]?.listen ?? "";
  const localOf = (agent: number) => agents[agent - 1]?.localApi ?? "";
  const keysOf = async (member: string) => (await members.listKeys({ member })).keys;
  const ownersNow = async () => {
    const owners = new Map<string, string>();
    for (const member of (await members.listMembers({})).members)
      for (const key of await keysOf(member.host)) owners.set(key, member.host);
    return owners;
  };

  before(async () => {
    root = await mkdtemp(join(tmpdir(), "corral-cart-actor-"));
    await mkdir(join(root, "controller"));
    controller = await startControllerProcess(processes, join(root, "controller"), {
      liveness: { minInterval: "200ms", downAfter: "800ms" },
    });
    const dataDir = join(root, "controller", "data");
    admin = {
      ca: join(dataDir, "admin", "ca.crt"),
      cert: join(dataDir, "admin", "client.crt"),
      key: join(dataDir, "admin", "client.key"),
    };
    const { token } = await plaintextClient(TokensService, controller.bridgePort).createToken({
      role: Role.NODE,
      description: "cart-actor test agents",
    });
    for (let i = 1; i <= 3; i++) {
      const agent = await startAgentProcess(processes, join(root, `agent-${i}`), [
        "--name",
        `agent-${i}`,
        "--join",
        controller.cluster,
        "--token",
        token,
      ]);
      const listen = /cluster listener\s+(\S+)/.exec(agent.process.stdout())?.[1] ?? "";
      agents.push({ ...agent, listen });
    }
    members = plaintextClient(MembersService, controller.bridgePort);
    await eventually(
      async () => {
        const listed = (await members.listMembers({})).members;
        return listed.length === 4 && listed.every((m) => m.eligible) ? true : undefined;
      },
      30_000,
      "the controller and three agents ready",
    );
    await members.registerKeys({ keys });
  });

  after(async () => {
    await processes.killAll();
    if (root !== undefined) await rm(root, { recursive: true, force: true });
  });

  it("answers the five RPCs with their documented fields, over plaintext loopback and mTLS", {
    timeout: 120_000,
  }, async () => {
    const controllerHost = controller.cluster;
    const all = [controllerHost, hostOf(1), hostOf(2), hostOf(3)].sort();
    const bridge = controller.bridge;
    // A key agent-1 owns by hashing, to hand over to agent-2.
    const handed = (await keysOf(hostOf(1)))[0] ?? "";
    assert.equal((await members.resolveOwner({ key: handed })).reason, "rendezvous");
    const agent3Keys = await keysOf(hostOf(3));
    assert.ok(agent3Keys.length > 0);
    const before = Math.floor(Date.now() / 1000);
    // A name of agent-2 the directory does not know yet (its certificate names localhost too).
    const alias = `localhost:${hostOf(2).split(":")[1]}`;
    const ofAgent2 = (await keysOf(hostOf(2)))[0] ?? "";
    const [unknownAlias] = (
      await runCalls([
        {
          target: controller.bridge,
          method: "ConfirmOwner",
          request: { cart_id: ofAgent2, new_host: alias },
        },
      ])
    ).results;
    assert.equal(unknownAlias?.response?.accepted, false);
    assert.match(String(unknownAlias?.response?.message), /is not a member/);

    const calls: Call[] = [
      /* 0 */ { target: bridge, method: "Ping" },
      /* 1 */ { target: localOf(1), method: "Ping" },
      /* 2 */ { target: hostOf(1), method: "Ping", tls: admin },
      /* 3 */ { target: controllerHost, method: "Ping", tls: admin },
      /* 4 */ { target: controllerHost, method: "Ping", timeout: 3 },
      /* 5 */ { target: controllerHost, method: "Ping", tls: { ca: admin.ca } },
      /* 6 */ {
        target: bridge,
        method: "Negotiate",
        request: {
          known_hosts: [hostOf(1), hostOf(2), `localhost:${hostOf(2).split(":")[1]}`, "127.0.0.1:1"],
        },
      },
      /* 7 */ { target: localOf(1), method: "Negotiate", request: { known_hosts: [] } },
      /* 8 */ { target: bridge, method: "GetCartIds" },
      /* 9 */ { target: localOf(1), method: "GetCartIds" },
      /* 10 */ { target: localOf(2), method: "GetCartIds" },
      /* 11 */ { target: localOf(3), method: "GetCartIds" },
      /* 12 */ { target: bridge, method: "ConfirmOwner", request: { cart_id: handed, new_host: hostOf(2) } },
      /* 13 */ {
        target: localOf(1),
        method: "ConfirmOwner",
        request: { cart_id: handed, new_host: hostOf(2) },
      },
      /* 14 */ { target: localOf(2), method: "GetCartIds" },
      /* 15 */ {
        target: bridge,
        method: "ConfirmOwner",
        request: { cart_id: handed, new_host: "127.0.0.1:1" },
      },
      /* 16 */ { target: bridge, method: "ConfirmOwner", request: { cart_id: handed, new_host: hostOf(1) } },
      /* 17 */ { target: localOf(3), method: "Closing", request: { host: hostOf(3) } },
      /* 18 */ { target: localOf(3), method: "GetCartIds" },
      /* 19 */ { target: bridge, method: "Negotiate", request: { known_hosts: [hostOf(3)] } },
      /* 20 */ { target: bridge, method: "Closing", request: { host: "127.0.0.1:1" } },
      /* 21 */ { target: localOf(2), method: "Closing", request: { host: hostOf(1) } },
      /* 22 */ { target: bridge, method: "ConfirmOwner", request: { cart_id: ofAgent2, new_host: alias } },
    ];
    const { results, stderr } = await runCalls(calls);
    const r = (i: number) => results[i] as CallResult;
    const ok = (i: number) => {
      assert.equal(
        r(i).code,
        "OK",
        `call ${i} (${calls[i]?.method} on ${calls[i]?.target}): ${JSON.stringify(r(i))}\n${stderr}`,
      );
      return r(i).response as Record<string, unknown>;
    };

    // Ping: the member's advertised host and its unix time in seconds (int64, a string in JSON).
    for (const [i, host] of [
      [0, controllerHost],
      [1, hostOf(1)],
      [2, hostOf(1)],
      [3, controllerHost],
    ] as const) {
      const ping = ok(i);
      assert.equal(ping.host, host, `call ${i}`);
      const time = Number(ping.unix_time);
      assert.ok(time >= before - 1 && time <= Date.now() / 1000 + 1, `unix_time ${ping.unix_time}`);
    }
    // The cluster listener speaks TLS only, and only to callers with a certificate.
    assert.equal(r(4).code, "UNAVAILABLE", JSON.stringify(r(4)));
    assert.equal(r(5).code, "UNAUTHENTICATED", JSON.stringify(r(5)));

    // Negotiate: the healthy hosts, the callee's included; an alias proven by a probe counts as its
    // member, a host that never answered is not returned.
    assert.deepEqual(ok(6).hosts, all);
    assert.deepEqual(ok(7).hosts, all);

    // GetCartIds: each member's own keys; together every key exactly once.
    const byMember = [8, 9, 10, 11].map((i) => ok(i).cart_ids as string[]);
    const union = byMember.flat();
    assert.equal(union.length, keys.length);
    assert.deepEqual([...new Set(union)].sort(), [...keys].sort());
    assert.ok(
      byMember.every((list) => list.length > 0),
      `every member owns some: ${byMember.map((l) => l.length)}`,
    );
    assert.ok((byMember[1] ?? []).includes(handed));

    // ConfirmOwner: the controller's node does not own the key, so it cannot hand it over …
    assert.equal(ok(12).accepted, false);
    assert.match(String(ok(12).message), /only its owner may hand it/);
    // … its owner (agent-1, through its own agent) can.
    assert.equal(ok(13).accepted, true, String(ok(13).message));
    assert.match(String(ok(13).message), /handed over by its owner/);
    assert.ok((ok(14).cart_ids as string[]).includes(handed));
    assert.equal(ok(15).accepted, false);
    assert.match(String(ok(15).message), /not a member/);
    // The rendezvous owner takes it back.
    assert.equal(ok(16).accepted, true, String(ok(16).message));
    assert.match(String(ok(16).message), /rendezvous owner/);
    assert.equal((await members.resolveOwner({ key: handed })).owner?.host, hostOf(1));

    // Closing: agent-3 drains; its keys moved before the answer.
    assert.equal(ok(17).accepted, true);
    assert.equal(ok(17).message, `${hostOf(3)} (agent-3) is draining: ${agent3Keys.length} keys moved`);
    assert.deepEqual(ok(18).cart_ids, []);
    assert.deepEqual(
      ok(19).hosts,
      all.filter((h) => h !== hostOf(3)),
    );
    assert.equal(ok(20).accepted, false);
    assert.match(String(ok(20).message), /not a member/);
    // A node announces only its own closing.
    assert.equal(r(21).code, "PERMISSION_DENIED", JSON.stringify(r(21)));
    assert.equal((await members.listMembers({})).members.find((m) => m.host === hostOf(1))?.draining, false);
    // The alias Negotiate probed now counts as agent-2.
    assert.equal(ok(22).accepted, true, String(ok(22).message));
    assert.equal(ok(22).message, `${ofAgent2} already belongs to ${hostOf(2)} (agent-2)`);
  });

  it("Closing moved the keys before the process exits", { timeout: 60_000 }, async () => {
    const agent3 = agents[2];
    assert.ok(agent3 !== undefined);
    assert.equal(agent3.process.exited, false, "agent-3 still runs after its Closing");
    assert.deepEqual(await keysOf(hostOf(3)), []);
    const owners = await ownersNow();
    assert.equal(owners.size, keys.length);
    const exit = await agent3.process.stop("SIGTERM", 10_000);
    assert.deepEqual(exit, { code: 0, signal: null }, agent3.process.stderr());
    await eventually(
      async () => {
        const member = (await members.listMembers({})).members.find((m) => m.host === hostOf(3));
        return member?.status === NodeStatus.DOWN ? true : undefined;
      },
      15_000,
      "agent-3 down",
    );
    assert.deepEqual(await ownersNow(), owners, "nothing moved when the drained process went away");
  });

  it("a member killed with SIGKILL loses its keys (and claims) to the others once it is marked down", {
    timeout: 60_000,
  }, async () => {
    const agent2 = agents[1];
    assert.ok(agent2 !== undefined);
    await members.claim({ key: "pinned-to-agent-2", member: hostOf(2) });
    const before = await ownersNow();
    const victimKeys = [...before].filter(([, host]) => host === hostOf(2)).map(([key]) => key);
    assert.ok(victimKeys.length > 0);
    await agent2.process.stop("SIGKILL", 5_000);
    await eventually(
      async () => {
        const member = (await members.listMembers({})).members.find((m) => m.host === hostOf(2));
        return member?.status === NodeStatus.DOWN ? true : undefined;
      },
      15_000,
      "agent-2 marked down",
    );
    const after = await ownersNow();
    assert.equal(after.size, before.size, "every key still has an owner");
    for (const [key, owner] of before) {
      if (owner === hostOf(2))
        assert.notEqual(after.get(key), hostOf(2), `${key} still with the dead member`);
      else assert.equal(after.get(key), owner, `${key} moved though its owner lives`);
    }
    const survivors = new Set([controller.cluster, hostOf(1)]);
    for (const key of victimKeys)
      assert.ok(survivors.has(after.get(key) ?? ""), `${key} went to ${after.get(key)}`);
    await eventually(
      async () =>
        (await members.resolveOwner({ key: "pinned-to-agent-2" })).reason === "rendezvous" ? true : undefined,
      5_000,
      "the dead member's claim released",
    );
    // GetCartIds from Python on the survivors agrees.
    const { results } = await runCalls([
      { target: controller.bridge, method: "GetCartIds" },
      { target: localOf(1), method: "GetCartIds" },
    ]);
    const fromPython = results.flatMap((result) => (result.response?.cart_ids as string[] | undefined) ?? []);
    assert.deepEqual(fromPython.sort(), [...after.keys()].sort());
  });
});
