import assert from "node:assert/strict";
import { randomBytes, X509Certificate } from "node:crypto";
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { createClient } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import { fetchControllerCa } from "../../src/agent/ca-pin.ts";
import { resolveControllerConfig } from "../../src/controller/config.ts";
import { AgentService } from "../../src/gen/corral/v1/agent_pb.ts";
import { CertificatesService } from "../../src/gen/corral/v1/certificates_pb.ts";
import { NodesService } from "../../src/gen/corral/v1/nodes_pb.ts";
import { caStateKey } from "../../src/security/ca-state.ts";
import { certificateFingerprint } from "../../src/security/pem.ts";
import { eventually, joinWithToken, startTestAgent, type TestAgent } from "../helpers/agent.ts";
import { plaintextClient } from "../helpers/clients.ts";
import { startTestController, type TestController } from "../helpers/controller.ts";
import { etcdMissing, startTestEtcd, type TestEtcd } from "../helpers/etcd.ts";

const missing = etcdMissing();

/** A client of `port` with the node's own credentials from its data dir, as its agent would dial. */
async function asNode(node: TestAgent, port: number) {
  const [key, cert, ca] = await Promise.all(
    ["node.key", "node.crt", "ca.crt"].map((file) => readFile(join(node.dataDir, file), "utf8")),
  );
  return createGrpcTransport({
    baseUrl: `https://127.0.0.1:${port}`,
    nodeOptions: { key, cert, ca },
    defaultTimeoutMs: 10_000,
  });
}

describe("controllers sharing an etcd store share one CA", { skip: missing }, () => {
  let etcd: TestEtcd;
  let dir: string;
  let a: TestController;
  let b: TestController;
  let node: TestAgent;
  const prefix = "/corral-shared-ca";

  before(async () => {
    etcd = await startTestEtcd();
    dir = await mkdtemp(join(tmpdir(), "corral-ca-key-"));
    const keyFile = join(dir, "ca.key");
    await writeFile(keyFile, randomBytes(32).toString("base64"), { mode: 0o600 });
    const shared = {
      store: { etcd: { endpoints: [etcd.endpoint], prefix, leaseTtl: "2s" } },
      ca: { keyFile },
    };
    // Started together: both race to create the CA, and the create-if-absent txn makes them agree.
    [a, b] = await Promise.all([
      startTestController({ node: { name: "ctl-a" }, ...shared }),
      startTestController({ node: { name: "ctl-b" }, ...shared }),
    ]);
    node = await startTestAgent({ name: "worker-1", trustRefreshInterval: "200ms" });
    await joinWithToken(a, node);
  });
  after(async () => {
    await node?.close();
    await a?.close();
    await b?.close();
    await etcd?.stop();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  it("has one CA fingerprint on every controller", () => {
    assert.equal(a.controller.ca.fingerprint, b.controller.ca.fingerprint);
    assert.equal(a.controller.ca.certificatePem, b.controller.ca.certificatePem);
  });

  it("keeps the CA key sealed in etcd, never in clear", async () => {
    const stored = await a.controller.context.store.get(caStateKey);
    assert.ok(stored !== undefined, "the CA state is in the store");
    const everything = await a.controller.context.store.list("/");
    assert.ok(everything.items.length > 10);
    for (const item of everything.items) assert.doesNotMatch(item.value, /PRIVATE KEY/, item.key);
    const state = JSON.parse(stored.value) as { cas: { key: { sealed?: { alg: string } } }[] };
    assert.equal(state.cas[0]?.key.sealed?.alg, "aes-256-gcm");
  });

  it("lets an agent joined through A call B over mTLS with the same credentials", async () => {
    const transport = await asNode(node, b.clusterPort);
    const answer = await createClient(AgentService, transport).heartbeat({ cpuUsage: 1 });
    assert.ok(answer.nextIn !== undefined, "B answered the node's heartbeat");
    const seen = await createClient(NodesService, transport).getNode({ node: node.agent.identity.nodeId });
    assert.equal(seen.node?.name, "worker-1");
  });

  it("refuses a revoked node certificate on the next call, on both controllers", async () => {
    const other = await startTestAgent({ name: "worker-2" });
    try {
      await joinWithToken(b, other);
      const transportA = await asNode(other, a.clusterPort);
      const transportB = await asNode(other, b.clusterPort);
      await createClient(AgentService, transportA).heartbeat({ cpuUsage: 1 });
      const certificate = new X509Certificate(await readFile(join(other.dataDir, "node.crt")));
      await a.controller.context.resolver.revokeCertificate(certificate.serialNumber, "test");
      for (const transport of [transportA, transportB]) {
        await assert.rejects(
          createClient(AgentService, transport).heartbeat({ cpuUsage: 1 }),
          (error: Error) => /revoked/.test(error.message),
        );
      }
    } finally {
      await other.close();
    }
  });

  it("rotates on every controller at once: started on A, followed by B, the agent still calls both", async () => {
    const rotated = await plaintextClient(CertificatesService, a.bridgePort).rotateCa({
      overlap: { seconds: 3n, nanos: 0 },
    });
    const next = rotated.cas.find((ca) => ca.issuing)?.fingerprint;
    assert.ok(next !== undefined && next !== a.controller.ca.fingerprint);
    await eventually(
      async () => (b.controller.ca.issuingFingerprint === next ? true : undefined),
      5_000,
      "B follows the rotation started on A",
    );
    const seenByB = await plaintextClient(CertificatesService, b.bridgePort).getCa({});
    assert.equal(seenByB.rotation?.inProgress, true);
    await eventually(
      async () => {
        const certificate = new X509Certificate(await readFile(join(node.dataDir, "node.crt")));
        const issuer = b.controller.ca
          .trustedCertificates()
          .find((ca) => certificateFingerprint(new Uint8Array(ca.rawData)) === next);
        const issuerKey =
          issuer === undefined ? undefined : new X509Certificate(Buffer.from(issuer.rawData)).publicKey;
        return issuerKey !== undefined && certificate.verify(issuerKey) ? true : undefined;
      },
      2_500,
      "the agent renews onto the new CA",
    );
    for (const controller of [a, b]) {
      await createClient(AgentService, await asNode(node, controller.clusterPort)).heartbeat({ cpuUsage: 1 });
    }
    await eventually(
      async () =>
        a.controller.ca.fingerprint === next && b.controller.ca.fingerprint === next ? true : undefined,
      6_000,
      "both controllers present the new CA after the overlap",
    );
    const stored = JSON.parse((await a.controller.context.store.get(caStateKey))?.value ?? "{}") as {
      cas?: unknown[];
    };
    await eventually(
      async () => {
        const state = JSON.parse((await a.controller.context.store.get(caStateKey))?.value ?? "{}") as {
          cas?: unknown[];
        };
        return state.cas?.length === 1 ? true : undefined;
      },
      5_000,
      `the leader writes the end of the overlap (had ${stored.cas?.length} CAs)`,
    );
    for (const controller of [a, b]) {
      const pinned = await fetchControllerCa({ host: "127.0.0.1", port: controller.clusterPort }, next);
      assert.equal(pinned.fingerprint, next);
      await createClient(AgentService, await asNode(node, controller.clusterPort)).heartbeat({ cpuUsage: 1 });
    }
  });

  it("refuses to start a controller on etcd without ca.keyFile, naming the key", () => {
    assert.throws(
      () =>
        resolveControllerConfig(
          { store: { etcd: { endpoints: [etcd.endpoint], prefix } } },
          dir,
          { dataDir: dir },
          "test",
        ),
      /ca\.keyFile: is required with store\.etcd/,
    );
  });

  it("refuses to start with another key file than the one that sealed the CA", async () => {
    const wrong = join(dir, "wrong.key");
    await writeFile(wrong, randomBytes(32).toString("hex"), { mode: 0o600 });
    await assert.rejects(
      startTestController({
        node: { name: "ctl-c" },
        store: { etcd: { endpoints: [etcd.endpoint], prefix } },
        ca: { keyFile: wrong },
      }),
      /does not open the cluster's CA key/,
    );
  });
});
