import assert from "node:assert/strict";
import { X509Certificate } from "node:crypto";
import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { createClient } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import { fetchControllerCa } from "../../src/agent/ca-pin.ts";
import {
  CertificateKind,
  CertificateStatus,
  CertificatesService,
} from "../../src/gen/corral/v1/certificates_pb.ts";
import { NodesService } from "../../src/gen/corral/v1/nodes_pb.ts";
import { NodeAgent } from "../../src/gen/picontroller_pb.ts";
import { targetNodeHeader } from "../../src/wire/target-node.ts";
import { eventually, joinWithToken, startTestAgent, type TestAgent } from "../helpers/agent.ts";
import { plaintextClient } from "../helpers/clients.ts";
import { startTestController, type TestController } from "../helpers/controller.ts";

const overlapMs = 4_000;

function signedBy(certificatePem: string, caPem: string): boolean {
  const certificate = new X509Certificate(certificatePem);
  const ca = new X509Certificate(caPem);
  return certificate.checkIssued(ca) && certificate.verify(ca.publicKey);
}

function caCertificates(bundle: string): string[] {
  return bundle.match(/-----BEGIN CERTIFICATE-----[\s\S]*?-----END CERTIFICATE-----/g) ?? [];
}

/** Both directions of the cluster's mTLS, over and over: agent → controller and controller → agent. */
class Traffic {
  readonly failures: string[] = [];
  calls = 0;
  #running = true;
  #loop: Promise<void>;

  constructor(cluster: TestController, nodes: readonly TestAgent[], phase: () => string) {
    const relay = plaintextClient(NodeAgent, cluster.bridgePort);
    this.#loop = (async () => {
      for (let round = 0; this.#running && round < 10_000; round++) {
        for (const node of nodes) {
          const name = node.agent.identity.name;
          try {
            if (node.agent.link.state.value !== "CONNECTED")
              throw new Error(`state ${node.agent.link.state.value}`);
            // With the node's current credentials: a new bundle or certificate means new TLS connections.
            await node.agent.link.client(NodesService).getNode({ node: node.agent.identity.nodeId });
            await relay.healthCheck({}, { headers: { [targetNodeHeader]: name }, timeoutMs: 10_000 });
            this.calls++;
          } catch (error) {
            this.failures.push(`${phase()}: ${name}: ${(error as Error).message}`);
          }
        }
        await new Promise((resolve) => setTimeout(resolve, 100));
      }
    })();
  }

  async stop(): Promise<void> {
    this.#running = false;
    await this.#loop;
  }
}

describe("CA rotation with an overlap", () => {
  let cluster: TestController;
  const nodes: TestAgent[] = [];
  let traffic: Traffic | undefined;
  let phase = "before";

  before(async () => {
    cluster = await startTestController();
    for (const name of ["rot-1", "rot-2"]) {
      const node = await startTestAgent({ name, trustRefreshInterval: "200ms" });
      await joinWithToken(cluster, node);
      nodes.push(node);
    }
  });
  after(async () => {
    await traffic?.stop();
    for (const node of nodes) await node.close();
    await cluster?.close();
  });

  it("keeps every agent connected before, during and after, as they renew onto the new CA", async () => {
    const certs = plaintextClient(CertificatesService, cluster.bridgePort);
    const oldCa = cluster.controller.ca.presentingCertificatePem;
    const oldFingerprint = cluster.controller.ca.fingerprint;
    const adminDir = cluster.controller.adminCredentialsDir;
    const oldAdmin = await Promise.all(
      ["client.key", "client.crt"].map((file) => readFile(join(adminDir, file), "utf8")),
    );
    traffic = new Traffic(cluster, nodes, () => phase);
    await eventually(async () => (traffic !== undefined && traffic.calls >= 4 ? true : undefined));

    phase = "during";
    const rotated = await certs.rotateCa({ overlap: { seconds: BigInt(overlapMs / 1000), nanos: 0 } });
    assert.equal(rotated.rotation?.inProgress, true);
    assert.equal(rotated.cas.length, 2, "both CAs are trusted during the overlap");
    const next = rotated.cas.find((ca) => ca.issuing);
    assert.ok(next !== undefined && next.fingerprint !== oldFingerprint);
    assert.equal(rotated.cas.find((ca) => ca.presenting)?.fingerprint, oldFingerprint);
    await assert.rejects(certs.rotateCa({}), /already under way/);

    for (const node of nodes) {
      await eventually(
        async () => {
          const certificate = await readFile(join(node.dataDir, "node.crt"), "utf8");
          const bundle = await readFile(join(node.dataDir, "ca.crt"), "utf8");
          return signedBy(certificate, next.certificatePem) && caCertificates(bundle).length === 2
            ? true
            : undefined;
        },
        overlapMs - 500,
        `${node.agent.identity.name} renews onto the new CA within the overlap`,
      );
    }
    // During the overlap the listener still presents the old CA, which agents that have not yet
    // fetched the bundle trust.
    const during = await fetchControllerCa({ host: "127.0.0.1", port: cluster.clusterPort }, undefined);
    assert.equal(during.fingerprint, oldFingerprint);

    await eventually(
      async () => {
        const ca = await certs.getCa({});
        return ca.cas.length === 1 && !ca.rotation?.inProgress ? ca : undefined;
      },
      overlapMs + 5_000,
      "the overlap ends",
    );
    phase = "after";
    const after = await fetchControllerCa({ host: "127.0.0.1", port: cluster.clusterPort }, undefined);
    assert.equal(after.fingerprint, next.fingerprint, "the listener presents the new CA");
    for (const node of nodes) {
      await eventually(
        async () => {
          const bundle = await readFile(join(node.dataDir, "ca.crt"), "utf8");
          return caCertificates(bundle).length === 1 && signedBy(bundle, next.certificatePem)
            ? true
            : undefined;
        },
        5_000,
        `${node.agent.identity.name} drops the old CA`,
      );
    }
    // The node certificates the old CA signed are listed as untrusted, not valid.
    const { certificates } = await certs.listCertificates({ kind: CertificateKind.NODE });
    const signedByOld = certificates.filter((c) => c.caFingerprint === oldFingerprint);
    assert.ok(signedByOld.length >= nodes.length);
    for (const c of signedByOld) assert.equal(c.status, CertificateStatus.UNTRUSTED, c.serial);
    const calls = traffic.calls;
    await eventually(async () => (traffic !== undefined && traffic.calls >= calls + 4 ? true : undefined));
    await traffic.stop();
    assert.deepEqual(traffic.failures, [], "no call failed in any phase");

    // The old CA is no longer trusted: a client certificate it signed is refused.
    const [key, cert] = oldAdmin;
    assert.ok(signedBy(cert ?? "", oldCa));
    const stale = createClient(
      CertificatesService,
      createGrpcTransport({
        baseUrl: `https://127.0.0.1:${cluster.clusterPort}`,
        nodeOptions: { key, cert, ca: next.certificatePem },
        defaultTimeoutMs: 5_000,
      }),
    );
    await assert.rejects(stale.getCa({}));
    // The admin credentials in the data dir were moved onto the new CA and still work.
    const [newKey, newCert, newCa] = await Promise.all(
      ["client.key", "client.crt", "ca.crt"].map((file) => readFile(join(adminDir, file), "utf8")),
    );
    assert.ok(signedBy(newCert ?? "", next.certificatePem));
    const admin = createClient(
      CertificatesService,
      createGrpcTransport({
        baseUrl: `https://127.0.0.1:${cluster.clusterPort}`,
        nodeOptions: { key: newKey, cert: newCert, ca: newCa },
        defaultTimeoutMs: 5_000,
      }),
    );
    assert.equal((await admin.getCa({})).cas[0]?.fingerprint, next.fingerprint);

    // A node joining now pins the new CA (the token carries it) and gets in.
    const late = await startTestAgent({ name: "rot-late" });
    try {
      await joinWithToken(cluster, late);
      const bundle = await readFile(join(late.dataDir, "ca.crt"), "utf8");
      assert.ok(signedBy(await readFile(join(late.dataDir, "node.crt"), "utf8"), next.certificatePem));
      assert.equal(caCertificates(bundle).length, 1);
    } finally {
      await late.close();
    }
  });
});

describe("a CA rotation and a controller restart (SQLite, keys in files)", () => {
  it("keeps both CAs and the overlap across the restart, and the old key goes when it ends", async () => {
    let cluster = await startTestController();
    try {
      const oldFingerprint = cluster.controller.ca.fingerprint;
      const rotated = await plaintextClient(CertificatesService, cluster.bridgePort).rotateCa({
        overlap: { seconds: 3n, nanos: 0 },
      });
      const next = rotated.cas.find((ca) => ca.issuing)?.fingerprint ?? "";
      cluster = await cluster.restart();
      const ca = cluster.controller.ca;
      assert.equal(ca.fingerprint, oldFingerprint, "still presenting the old CA during the overlap");
      assert.equal(ca.issuingFingerprint, next);
      assert.equal(caCertificates(ca.certificatePem).length, 2);
      const bundleFile = await readFile(join(cluster.dataDir, "ca", "ca.crt"), "utf8");
      assert.equal(bundleFile, ca.certificatePem, "ca/ca.crt is the trust bundle, for --ca");
      await eventually(async () => (ca.fingerprint === next ? true : undefined), 6_000, "the overlap ends");
      await eventually(
        async () =>
          (await readFile(join(cluster.dataDir, "ca", "ca.key"), "utf8").catch(() => undefined)) === undefined
            ? true
            : undefined,
        5_000,
        "the retired CA's key file is deleted",
      );
      cluster = await cluster.restart();
      assert.equal(cluster.controller.ca.fingerprint, next, "the new CA after another restart");
    } finally {
      await cluster.close();
    }
  });
});
