import assert from "node:assert/strict";
import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { Code, ConnectError, createClient } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import { ControlPlane } from "../../src/gen/control_plane_pb.ts";
import { eventually, type TestAgent } from "../helpers/agent.ts";
import { type CartCluster, startCartCluster } from "./cart-cluster.ts";

/**
 * messages.ControlPlane on an agent's cluster listener, called by another node with its own
 * certificate: what the agent would pass on to the controller with its own identity, it first checks
 * is the caller's to ask. a1 may not make a2 drain, nor hand a2's keys away.
 */

const codeOf = (error: unknown) => (error instanceof ConnectError ? error.code : undefined);

describe("a node acts only for itself on another node's listener", () => {
  let cart: CartCluster;
  let a1: TestAgent;
  let a2: TestAgent;
  let peerOnA2: ReturnType<typeof createClient<typeof ControlPlane>>;
  const keys = Array.from({ length: 60 }, (_, i) => `cart-${i}`);

  before(async () => {
    cart = await startCartCluster(2);
    [a1, a2] = cart.agents as [TestAgent, TestAgent];
    const [ca, cert, key] = await Promise.all(
      ["ca.crt", "node.crt", "node.key"].map((file) => readFile(join(a1.dataDir, file), "utf8")),
    );
    peerOnA2 = createClient(
      ControlPlane,
      createGrpcTransport({
        baseUrl: `https://${a2.agent.listenAddress}`,
        nodeOptions: { ca, cert, key },
        defaultTimeoutMs: 10_000,
      }),
    );
    await cart.members.registerKeys({ keys });
    // a2's listener knows a1 once it has its first view of the cluster.
    await eventually(async () =>
      (await peerOnA2.ping({})).host === a2.agent.listenAddress ? true : undefined,
    );
  });
  after(() => cart?.close());

  const a2Member = async () =>
    (await cart.members.listMembers({})).members.find((m) => m.host === a2.agent.listenAddress);

  it("refuses Closing {host: a2} from a1 with PERMISSION_DENIED, and a2 keeps its keys", async () => {
    const before = (await cart.members.listKeys({ member: a2.agent.listenAddress })).keys;
    assert.ok(before.length > 0, "a2 owns some keys");
    await assert.rejects(
      peerOnA2.closing({ host: a2.agent.listenAddress }),
      (e: unknown) => codeOf(e) === Code.PermissionDenied && /only its own closing/.test(String(e)),
    );
    assert.equal((await a2Member())?.draining, false);
    assert.deepEqual((await cart.members.listKeys({ member: a2.agent.listenAddress })).keys, before);
  });

  it("refuses ConfirmOwner from a1 for a key a2 owns, and the key stays with a2", async () => {
    const [owned] = (await cart.members.listKeys({ member: a2.agent.listenAddress })).keys;
    assert.ok(owned !== undefined);
    await assert.rejects(
      peerOnA2.confirmOwner({ cartId: owned, newHost: a1.agent.listenAddress }),
      (e: unknown) => codeOf(e) === Code.PermissionDenied,
    );
    assert.equal((await cart.members.resolveOwner({ key: owned })).owner?.host, a2.agent.listenAddress);
  });

  it("lets a1 announce its own closing on a2 without draining anyone through a2", async () => {
    const ack = await peerOnA2.closing({ host: a1.agent.listenAddress });
    assert.equal(ack.accepted, false, ack.message);
    assert.equal((await a2Member())?.draining, false);
  });
});
