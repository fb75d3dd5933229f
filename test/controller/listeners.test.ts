import assert from "node:assert/strict";
import { readFile, stat } from "node:fs/promises";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { Code, ConnectError, createClient, type Interceptor } from "@connectrpc/connect";
import {
  createConnectTransport,
  createGrpcTransport,
  createGrpcWebTransport,
} from "@connectrpc/connect-node";
import { ClusterService } from "../../src/gen/corral/v1/cluster_pb.ts";
import { NodesService } from "../../src/gen/corral/v1/nodes_pb.ts";
import { Health } from "../../src/gen/grpc/health/v1/health_pb.ts";
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

  it("serves gRPC over mTLS to the admin credentials it wrote on first start", async () => {
    const dir = cluster.controller.adminCredentialsDir;
    const [ca, cert, key] = await Promise.all(
      ["ca.crt", "client.crt", "client.key"].map((file) => readFile(join(dir, file), "utf8")),
    );
    assert.equal((await stat(join(dir, "client.key"))).mode & 0o777, 0o600);
    const transport = createGrpcTransport({
      baseUrl: `https://127.0.0.1:${cluster.clusterPort}`,
      nodeOptions: { ca, cert, key },
    });
    const status = await createClient(ClusterService, transport).getClusterStatus({});
    assert.equal(status.controllerName, "My Controller");
  });

  it("refuses a caller without a certificate, except on the open doors", async () => {
    const ca = await readFile(join(cluster.dataDir, "ca", "ca.crt"), "utf8");
    const transport = createGrpcTransport({
      baseUrl: `https://127.0.0.1:${cluster.clusterPort}`,
      nodeOptions: { ca },
    });
    await assert.rejects(
      createClient(ClusterService, transport).getClusterStatus({}),
      (error: unknown) => error instanceof ConnectError && error.code === Code.Unauthenticated,
    );
    const health = await createClient(Health, transport).check({ service: "" });
    assert.equal(health.status, 1);
  });

  it("is refused by a client that trusts another CA", async () => {
    const stranger = await CertificateAuthority.loadOrCreate(join(cluster.dataDir, "other-ca"), "stranger");
    const transport = createGrpcTransport({
      baseUrl: `https://127.0.0.1:${cluster.clusterPort}`,
      nodeOptions: { ca: stranger.certificatePem },
    });
    await assert.rejects(createClient(ClusterService, transport).getClusterStatus({}, { timeoutMs: 5_000 }));
  });

  it("serves the native API to browsers over Connect and gRPC-Web, to holders of an operator token", async () => {
    const baseUrl = `http://127.0.0.1:${cluster.webPort}`;
    const anonymous = createClient(NodesService, createConnectTransport({ baseUrl, httpVersion: "1.1" }));
    await assert.rejects(
      anonymous.listNodes({}),
      (e: unknown) => e instanceof ConnectError && e.code === Code.Unauthenticated,
    );
    const { token } = await cluster.controller.context.tokens.create({
      role: "viewer",
      ttlMs: 60_000,
      uses: 0,
      description: "test",
      createdBy: "test",
      caFingerprint: cluster.controller.ca.fingerprint,
    });
    const bearer: Interceptor = (next) => (request) => {
      request.header.set("authorization", `Bearer ${token}`);
      return next(request);
    };
    const connect = createClient(
      NodesService,
      createConnectTransport({ baseUrl, httpVersion: "1.1", interceptors: [bearer] }),
    );
    const viaConnect = await connect.getNode({ node: "My Controller" });
    assert.equal(viaConnect.node?.name, "My Controller");
    const grpcWeb = createClient(
      NodesService,
      createGrpcWebTransport({ baseUrl, httpVersion: "1.1", interceptors: [bearer] }),
    );
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
    const first = await startTestController();
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
    }
  });
});
