import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { ControlPlane } from "../../src/gen/control_plane_pb.ts";
import { eventually } from "../helpers/agent.ts";
import { plaintextClient } from "../helpers/clients.ts";
import { runCorral as cli } from "../helpers/corral-processes.ts";
import { type CartCluster, startCartCluster } from "./cart-cluster.ts";

/**
 * The client library (imported the way an actor host would: `corral/ownership`, through the package's
 * "exports") and the CLI, against a real controller with two agents.
 */
const { OwnershipClient } = await import("corral/ownership");

describe("the ownership client library and the CLI", () => {
  let cluster: CartCluster;
  const keys = Array.from({ length: 600 }, (_, i) => `cart-${i}`);

  before(async () => {
    cluster = await startCartCluster(2);
    await cluster.members.registerKeys({ keys });
  });
  after(() => cluster?.close());

  it("resolves every key locally exactly as the controller does, over the bridge, mTLS and an agent's local API", async () => {
    const bridge = `127.0.0.1:${cluster.controller.bridgePort}`;
    const targets = [
      { address: bridge },
      {
        address: `127.0.0.1:${cluster.controller.clusterPort}`,
        credentialsDir: cluster.controller.controller.adminCredentialsDir,
      },
      { address: cluster.agents[0]?.agent.localApiAddress ?? "" },
    ];
    for (const target of targets) {
      await using client = await OwnershipClient.connect(target);
      assert.deepEqual(client.eligibleHosts(), [...cluster.hosts].sort(), target.address);
      for (const key of keys.slice(0, 150)) {
        const remote = await cluster.members.resolveOwner({ key });
        assert.equal(client.owner(key)?.host, remote.owner?.host, `${target.address}: ${key}`);
      }
      // Keys the directory does not list are placed the same way.
      assert.equal(
        client.owner("never-registered")?.host,
        (await cluster.members.resolveOwner({ key: "never-registered" })).owner?.host,
      );
    }
  });

  it("refuses plaintext to an address that is not loopback", async () => {
    await assert.rejects(
      OwnershipClient.connect({ address: "10.1.2.3:7443" }),
      /plaintext is for loopback only/,
    );
  });

  it("follows claims and drains live, and tells onClosing when a member starts draining", async () => {
    await using client = await OwnershipClient.connect({
      address: `127.0.0.1:${cluster.controller.bridgePort}`,
    });
    const [controllerHost, firstAgent, secondAgent] = cluster.hosts as [string, string, string];
    const key = keys.find((k) => client.owner(k)?.host === firstAgent) ?? "";
    assert.notEqual(key, "");

    const claimed = await client.claim(key, secondAgent);
    assert.equal(claimed?.host, secondAgent);
    await eventually(
      async () => (client.owner(key)?.host === secondAgent ? true : undefined),
      5_000,
      "claim seen",
    );
    await client.release(key);
    await eventually(
      async () => (client.owner(key)?.host === firstAgent ? true : undefined),
      5_000,
      "release seen",
    );

    const closing: string[] = [];
    client.onClosing((member) => closing.push(member.host));
    const owned = (await cluster.members.listKeys({ member: secondAgent })).keys;
    assert.ok(owned.length > 0);
    // Through the second agent's own local API: Closing about itself.
    const ack = await plaintextClient(ControlPlane, cluster.agents[1]?.localPort ?? 0).closing({
      host: secondAgent,
    });
    assert.equal(ack.accepted, true, ack.message);
    assert.match(
      ack.message,
      new RegExp(`^${secondAgent} \\(agent-2\\) is draining: ${owned.length} keys moved$`),
    );
    await eventually(async () => (closing.includes(secondAgent) ? true : undefined), 5_000, "onClosing");
    assert.ok(!client.eligibleHosts().includes(secondAgent));
    for (const k of owned) assert.notEqual(client.owner(k)?.host, secondAgent);
    assert.deepEqual((await cluster.members.listKeys({ member: secondAgent })).keys, []);
    // An agent may announce only its own closing.
    await assert.rejects(
      plaintextClient(ControlPlane, cluster.agents[0]?.localPort ?? 0).closing({ host: controllerHost }),
      /may drain only itself/,
    );
    const undone = await client.drain(secondAgent, false);
    assert.equal(undone, owned.length);
    await eventually(
      async () => (client.eligibleHosts().includes(secondAgent) ? true : undefined),
      5_000,
      "back",
    );
  });

  it("corral members ls, owner, keys --member and drain", async () => {
    const bridge = ["--server", `127.0.0.1:${cluster.controller.bridgePort}`];
    const [controllerHost, firstAgent] = cluster.hosts as [string, string];
    const ls = await cli([...bridge, "members", "ls"]);
    assert.equal(ls.code, 0, ls.stderr);
    assert.match(ls.stdout, /^HOST\s+NAME\s+STATE\s+WEIGHT\s+KEYS\s+CLAIMS\s+LOAD\s+CPU$/m);
    for (const host of cluster.hosts) assert.match(ls.stdout, new RegExp(`^${host}\\s`, "m"));
    assert.match(ls.stdout, /^600 keys known$/m);

    const owner = await cli([...bridge, "owner", "cart-7"]);
    const expected = (await cluster.members.resolveOwner({ key: "cart-7" })).owner?.host ?? "?";
    assert.equal(owner.code, 0, owner.stderr);
    assert.match(owner.stdout, new RegExp(`^${expected}\\s+\\S.*by rendezvous hashing\\)$`, "m"));

    const listed = await cli([...bridge, "-o", "json", "keys", "--member", "agent-1"]);
    assert.equal(listed.code, 0, listed.stderr);
    const json = JSON.parse(listed.stdout) as { keys: string[]; member: { host: string } };
    assert.equal(json.member.host, firstAgent);
    assert.deepEqual(json.keys, (await cluster.members.listKeys({ member: firstAgent })).keys);

    const drained = await cli([...bridge, "drain", "agent-1"]);
    assert.equal(drained.code, 0, drained.stderr);
    assert.match(
      drained.stdout,
      new RegExp(`^${firstAgent} \\(agent-1\\) is draining: ${json.keys.length} keys moved$`, "m"),
    );
    const afterDrain = await cli([...bridge, "members", "ls"]);
    assert.match(
      afterDrain.stdout,
      new RegExp(`^${firstAgent}\\s+agent-1\\s+ready, draining \\(operator\\)`, "m"),
    );
    const undo = await cli([...bridge, "drain", "agent-1", "--undo"]);
    assert.match(undo.stdout, /takes keys again/);

    const missing = await cli([...bridge, "keys", "--member", "nobody"]);
    assert.equal(missing.code, 1);
    assert.match(missing.stderr, /NOT_FOUND: member "nobody" not found/);
    const usage = await cli([...bridge, "keys"]);
    assert.equal(usage.code, 2);
    assert.ok(controllerHost);
  });
});
