import assert from "node:assert/strict";
import { readFile, rm } from "node:fs/promises";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { Code, ConnectError, createClient } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import { AgentService } from "../../src/gen/corral/v1/agent_pb.ts";
import { ClusterService } from "../../src/gen/corral/v1/cluster_pb.ts";
import { NodeEventType, NodeStatus, NodesService } from "../../src/gen/corral/v1/nodes_pb.ts";
import { HubServerService } from "../../src/gen/hub_server_pb.ts";
import { CertificateAuthority } from "../../src/security/certificate-authority.ts";
import { operatorIdentityUri } from "../../src/security/principal.ts";
import { eventually, startTestAgent } from "../helpers/agent.ts";
import { plaintextClient } from "../helpers/clients.ts";
import { startTestController, type TestController } from "../helpers/controller.ts";

const codeOf = (error: unknown) => (error instanceof ConnectError ? error.code : undefined);

describe("liveness and revocation", () => {
  let cluster: TestController;
  before(async () => {
    cluster = await startTestController({
      liveness: { minInterval: "200ms", suspectAfterMissed: 3, downAfter: "800ms" },
    });
  });
  after(() => cluster.close());

  const token = async () =>
    (
      await cluster.controller.context.tokens.create({
        role: "node",
        ttlMs: 60_000,
        uses: 0,
        description: "t",
        createdBy: "t",
        caFingerprint: cluster.controller.ca.fingerprint,
      })
    ).token;

  it("marks a silent node suspect, then down, and ready again when it comes back — without a new request", async () => {
    const first = await startTestAgent({ name: "flaky" });
    const dataDir = first.dataDir;
    await first.agent.joinIfAsked(
      `127.0.0.1:${cluster.clusterPort}`,
      await token(),
      AbortSignal.timeout(20_000),
    );
    const nodeId = first.agent.identity.nodeId;
    const client = plaintextClient(NodesService, cluster.bridgePort);
    const watch = new AbortController();
    const seen: string[] = [];
    const watching = (async () => {
      for await (const event of client.watchNodes(
        { filter: { nameContains: "flaky" } },
        { signal: watch.signal },
      )) {
        if (event.type === NodeEventType.PUT || event.type === NodeEventType.SNAPSHOT) {
          const status = NodeStatus[event.node?.status ?? 0] ?? "UNKNOWN";
          if (seen.at(-1) !== status) seen.push(status);
        }
      }
    })().catch(() => undefined);
    try {
      await eventually(async () => (seen.at(-1) === "READY" ? true : undefined), 10_000, "ready");
      await first.agent.close(200); // the process goes away without a word
      await eventually(async () => (seen.at(-1) === "DOWN" ? true : undefined), 15_000, "down");
      const again = await startTestAgent({ name: "flaky", dataDir });
      try {
        assert.equal(again.agent.identity.nodeId, nodeId, "same identity from the data dir");
        await eventually(async () => (seen.at(-1) === "READY" ? true : undefined), 15_000, "ready again");
        assert.equal(
          (await cluster.controller.context.joinRequests.list({ includeDecided: true })).length,
          0,
        );
      } finally {
        await again.close();
        await rm(dataDir, { recursive: true, force: true });
      }
      assert.deepEqual(seen.slice(0, 4), ["READY", "SUSPECT", "DOWN", "READY"]);
    } finally {
      watch.abort();
      await watching;
    }
  });

  it("stops accepting a removed node's certificate at once", async () => {
    const node = await startTestAgent({ name: "doomed" });
    try {
      await node.agent.joinIfAsked(
        `127.0.0.1:${cluster.clusterPort}`,
        await token(),
        AbortSignal.timeout(20_000),
      );
      await eventually(async () => (node.agent.link.state.value === "CONNECTED" ? true : undefined));
      const agent = node.agent.link.client(AgentService);
      await agent.heartbeat({});
      await plaintextClient(NodesService, cluster.bridgePort).removeNode({ node: "doomed" });
      await assert.rejects(
        agent.heartbeat({}),
        (e: unknown) => codeOf(e) === Code.Unauthenticated && /no longer a member/.test(String(e)),
      );
      await eventually(
        async () => (node.agent.link.state.value === "UNAUTHENTICATED" ? true : undefined),
        15_000,
        "agent notices",
      );
    } finally {
      await node.close();
    }
  });

  it("lets a node read the cluster but not act on other nodes", async () => {
    const node = await startTestAgent({ name: "curious" });
    try {
      await node.agent.joinIfAsked(
        `127.0.0.1:${cluster.clusterPort}`,
        await token(),
        AbortSignal.timeout(20_000),
      );
      const nodes = node.agent.link.client(NodesService);
      assert.ok((await nodes.listNodes({})).nodes.length >= 2);
      await assert.rejects(
        nodes.removeNode({ node: "My Controller" }),
        (e: unknown) => codeOf(e) === Code.PermissionDenied,
      );
      const hub = node.agent.link.client(HubServerService);
      await assert.rejects(
        hub.removeNode({ nodeId: "curious" }),
        (e: unknown) => codeOf(e) === Code.PermissionDenied,
      );
    } finally {
      await node.close();
    }
  });

  it("refuses certificates from a foreign CA and expired ones", async () => {
    const dir = cluster.controller.adminCredentialsDir;
    const ca = await readFile(join(dir, "ca.crt"), "utf8");
    const call = (cert: string, key: string) =>
      createClient(
        ClusterService,
        createGrpcTransport({
          baseUrl: `https://127.0.0.1:${cluster.clusterPort}`,
          nodeOptions: { ca, cert, key },
        }),
      ).getClusterStatus({}, { timeoutMs: 5_000 });
    const stranger = await CertificateAuthority.loadOrCreate(
      join(cluster.dataDir, "stranger-ca"),
      "stranger",
    );
    const foreign = await stranger.issue({
      commonName: "admin",
      dnsNames: [],
      ipAddresses: [],
      uris: [operatorIdentityUri("admin", "mallory")],
      validityMs: 3_600_000,
      usage: "client",
    });
    await assert.rejects(
      call(foreign.certificatePem, foreign.privateKeyPem),
      (e: unknown) => codeOf(e) === Code.Unauthenticated,
    );
    const expired = await cluster.controller.ca.issue({
      commonName: "admin",
      dnsNames: [],
      ipAddresses: [],
      uris: [operatorIdentityUri("admin", "late")],
      validityMs: -1_000,
      usage: "client",
    });
    await assert.rejects(
      call(expired.certificatePem, expired.privateKeyPem),
      (e: unknown) => codeOf(e) === Code.Unauthenticated,
    );
    const good = await cluster.controller.ca.issue({
      commonName: "admin",
      dnsNames: [],
      ipAddresses: [],
      uris: [operatorIdentityUri("viewer", "vera")],
      validityMs: 60_000,
      usage: "client",
    });
    assert.ok((await call(good.certificatePem, good.privateKeyPem)).clusterId.length > 0);
  });

  it("refuses a token past its TTL", async () => {
    const { token: shortLived } = await cluster.controller.context.tokens.create({
      role: "node",
      ttlMs: 1,
      uses: 0,
      description: "t",
      createdBy: "t",
      caFingerprint: cluster.controller.ca.fingerprint,
    });
    await new Promise((resolve) => setTimeout(resolve, 20));
    const node = await startTestAgent({ name: "too-late" });
    try {
      await assert.rejects(
        node.agent.joinIfAsked(`127.0.0.1:${cluster.clusterPort}`, shortLived, AbortSignal.timeout(20_000)),
        /expired/,
      );
    } finally {
      await node.close();
    }
  });
});
