import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { Code, ConnectError, createClient } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import { ControlPlane } from "../../src/gen/picontroller_pb.ts";
import { createKeyAndCsr } from "../../src/security/node-key.ts";
import { plaintextClient } from "../helpers/clients.ts";
import { startTestController, type TestController } from "../helpers/controller.ts";

const codeOf = (error: unknown) => (error instanceof ConnectError ? error.code : undefined);

describe("Pi-Controller's ControlPlane on the controller", () => {
  let cluster: TestController;
  before(async () => {
    cluster = await startTestController();
  });
  after(() => cluster.close());

  const tlsClient = (tls: { cert?: string; key?: string } = {}) =>
    createClient(
      ControlPlane,
      createGrpcTransport({
        baseUrl: `https://127.0.0.1:${cluster.clusterPort}`,
        nodeOptions: { ca: cluster.controller.ca.certificatePem, ...tls },
      }),
    );

  it("registers a board with a join token and a CSR, and the board reports its health with its new certificate", async () => {
    const { token } = await cluster.controller.context.tokens.create({
      role: "node",
      ttlMs: 60_000,
      uses: 1,
      description: "t",
      createdBy: "t",
      caFingerprint: cluster.controller.ca.fingerprint,
    });
    const key = await createKeyAndCsr("pi-board-1");
    // Without a token a stranger's registration files a join request and hears "pending" at once.
    const pending = await tlsClient().registerNode({ name: "pi-board-1", csrPem: key.csrPem });
    assert.equal(pending.status, "pending");
    const [waited] = await cluster.controller.context.joinRequests.list({ includeDecided: true });
    assert.equal(waited?.name, "pi-board-1");
    const registered = await tlsClient().registerNode(
      {
        name: "pi-board-1",
        address: "127.0.0.1:7999",
        csrPem: key.csrPem,
        resources: { cpuCores: 4, memoryBytes: 4n * 1024n ** 3n },
      },
      { headers: { "corral-join-token": token } },
    );
    assert.equal(registered.success, true);
    assert.equal(registered.status, "ready");
    assert.ok(registered.heartbeatIntervalSeconds >= 1);
    const node = await cluster.controller.context.registry.get("pi-board-1");
    assert.equal(node.resources.memoryMb, 4096);

    const board = tlsClient({ cert: registered.certificatePem, key: key.privateKeyPem });
    await board.reportHealth({
      status: "DEGRADED",
      checks: [{ name: "sd-card", status: "DEGRADED", message: "92% full" }],
    });
    const health = await cluster.controller.context.health.get(node.id);
    assert.equal(health?.status, "DEGRADED");
    assert.equal(health?.checks[0]?.message, "92% full");
    await assert.rejects(
      board.reportHealth({ nodeId: "someone-else", status: "OK" }),
      (e) => codeOf(e) === Code.PermissionDenied,
    );
    await assert.rejects(board.reportHealth({ status: "FINE" }), (e) => codeOf(e) === Code.InvalidArgument);
  });

  it("syncs the whole state, or only what changed since a revision", async () => {
    const cp = plaintextClient(ControlPlane, cluster.bridgePort);
    const full = await cp.syncClusterState({ requesterId: "replica-2" });
    assert.ok(full.nodes.length >= 1);
    await cluster.controller.context.registry.register({ name: "late-node", status: "ready" });
    const delta = await cp.syncClusterState({ requesterId: "replica-2", sinceRevision: full.revision });
    assert.deepEqual(
      delta.nodes.map((n) => n.name),
      ["late-node"],
    );
    assert.ok(delta.revision > full.revision);
    await cluster.controller.context.registry.remove("late-node");
    const removal = await cp.syncClusterState({ sinceRevision: delta.revision });
    assert.deepEqual(
      removal.nodes.map((n) => n.status),
      ["removed"],
    );
    await assert.rejects(
      cp.syncClusterState({ sinceRevision: removal.revision + 1000n }),
      (e) => codeOf(e) === Code.InvalidArgument,
    );
  });
});
