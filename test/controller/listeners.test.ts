import assert from "node:assert/strict";
import { readFile, stat } from "node:fs/promises";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { createClient } from "@connectrpc/connect";
import {
  createConnectTransport,
  createGrpcTransport,
  createGrpcWebTransport,
} from "@connectrpc/connect-node";
import { ClusterService } from "../../src/gen/corral/v1/cluster_pb.ts";
import { NodesService } from "../../src/gen/corral/v1/nodes_pb.ts";
import { CertificateAuthority } from "../../src/security/certificate-authority.ts";
import { startTestController, type TestController } from "../helpers/controller.ts";

describe("controller listeners", () => {
  let cluster: TestController;
  before(async () => {
    cluster = await startTestController({ node: { name: "My Controller" } });
  });
  after(() => cluster.close());

  it("keeps the CA key readable by its owner only", async () => {
    const info = await stat(join(cluster.dataDir, "ca", "ca.key"));
    assert.equal(info.mode & 0o777, 0o600);
  });

  it("serves gRPC over TLS with a certificate from the controller's CA", async () => {
    const ca = await readFile(join(cluster.dataDir, "ca", "ca.crt"), "utf8");
    const transport = createGrpcTransport({
      baseUrl: `https://127.0.0.1:${cluster.clusterPort}`,
      nodeOptions: { ca },
    });
    const status = await createClient(ClusterService, transport).getClusterStatus({});
    assert.equal(status.controllerName, "My Controller");
  });

  it("is refused by a client that trusts another CA", async () => {
    const stranger = await CertificateAuthority.loadOrCreate(join(cluster.dataDir, "other-ca"), "stranger");
    const transport = createGrpcTransport({
      baseUrl: `https://127.0.0.1:${cluster.clusterPort}`,
      nodeOptions: { ca: stranger.certificatePem },
    });
    await assert.rejects(createClient(ClusterService, transport).getClusterStatus({}, { timeoutMs: 5_000 }));
  });

  it("serves the native API to browsers over Connect and gRPC-Web on the web listener", async () => {
    const baseUrl = `http://127.0.0.1:${cluster.webPort}`;
    const connect = createClient(NodesService, createConnectTransport({ baseUrl, httpVersion: "1.1" }));
    const viaConnect = await connect.getNode({ node: "My Controller" });
    assert.equal(viaConnect.node?.name, "My Controller");
    const grpcWeb = createClient(NodesService, createGrpcWebTransport({ baseUrl, httpVersion: "1.1" }));
    const viaGrpcWeb = await grpcWeb.listNodes({});
    assert.deepEqual(
      viaGrpcWeb.nodes.map((n) => n.name),
      ["My Controller"],
    );
    await assert.rejects(connect.getNode({ node: "ghost" }), (error: unknown) =>
      /not found/.test(String(error)),
    );
  });

  it("exposes Prometheus metrics and a health probe", async () => {
    const metrics = await fetch(`http://127.0.0.1:${cluster.webPort}/metrics`);
    assert.equal(metrics.status, 200);
    const text = await metrics.text();
    assert.match(text, /corral_nodes\{status="ready"\} 1/);
    assert.match(text, /corral_store_revision \d+/);
    const health = await fetch(`http://127.0.0.1:${cluster.webPort}/healthz`);
    assert.equal(health.status, 200);
  });
});

describe("controller restart", () => {
  it("keeps the cluster id, the controller's node id, the CA and the revision", async () => {
    const first = await startTestController({}, {}, undefined);
    const client = (port: number) =>
      createClient(ClusterService, createGrpcTransport({ baseUrl: `http://127.0.0.1:${port}` }));
    const before = await client(first.bridgePort).getClusterStatus({});
    const nodeBefore = await first.controller.context.registry.get("My Controller");
    const fingerprint = first.controller.ca.fingerprint;
    const second = await first.restart();
    try {
      const afterRestart = await client(second.bridgePort).getClusterStatus({});
      assert.equal(afterRestart.clusterId, before.clusterId);
      assert.ok(afterRestart.revision >= before.revision);
      assert.equal((await second.controller.context.registry.get("My Controller")).id, nodeBefore.id);
      assert.equal(second.controller.ca.fingerprint, fingerprint);
    } finally {
      await second.close();
      const { rm } = await import("node:fs/promises");
      await rm(first.dataDir, { recursive: true, force: true });
    }
  });
});
