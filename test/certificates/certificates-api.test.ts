import assert from "node:assert/strict";
import { X509Certificate } from "node:crypto";
import { mkdtemp, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { Code, ConnectError, createClient } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import { AgentService } from "../../src/gen/corral/v1/agent_pb.ts";
import {
  CertificateKind,
  CertificateStatus,
  CertificatesService,
} from "../../src/gen/corral/v1/certificates_pb.ts";
import { CertificateAuthority } from "../../src/security/certificate-authority.ts";
import { operatorIdentityUri } from "../../src/security/principal.ts";
import { eventually, joinWithToken, startTestAgent, type TestAgent } from "../helpers/agent.ts";
import { plaintextClient } from "../helpers/clients.ts";
import { startTestController, type TestController } from "../helpers/controller.ts";

/** The node's own credentials from its data dir: what its agent presents. */
async function nodeTransport(node: TestAgent, port: number) {
  const [key, cert, ca] = await Promise.all(
    ["node.key", "node.crt", "ca.crt"].map((file) => readFile(join(node.dataDir, file), "utf8")),
  );
  return createGrpcTransport({
    baseUrl: `https://127.0.0.1:${port}`,
    nodeOptions: { key, cert, ca },
    defaultTimeoutMs: 10_000,
  });
}

async function serialOf(node: TestAgent): Promise<string> {
  const certificate = new X509Certificate(await readFile(join(node.dataDir, "node.crt")));
  return certificate.serialNumber.toLowerCase().replace(/^0+/, "");
}

function codeOf(error: unknown): Code | undefined {
  return error instanceof ConnectError ? error.code : undefined;
}

describe("the CA as an API", () => {
  let cluster: TestController;
  let node: TestAgent;
  let foreignDir: string;
  let certs: ReturnType<typeof plaintextClient<typeof CertificatesService>>;

  before(async () => {
    cluster = await startTestController();
    certs = plaintextClient(CertificatesService, cluster.bridgePort);
    node = await startTestAgent({ name: "cert-node", trustRefreshInterval: "200ms" });
    await joinWithToken(cluster, node);
    foreignDir = await mkdtemp(join(tmpdir(), "corral-foreign-ca-"));
  });
  after(async () => {
    await node?.close();
    await cluster?.close();
    if (foreignDir) await rm(foreignDir, { recursive: true, force: true });
  });

  it("lists every kind of certificate issued, and shows one by serial", async () => {
    const { certificates } = await certs.listCertificates({});
    const kinds = new Set(certificates.map((c) => c.kind));
    for (const kind of [CertificateKind.NODE, CertificateKind.OPERATOR, CertificateKind.SERVER]) {
      assert.ok(kinds.has(kind), `a ${CertificateKind[kind]} certificate is listed`);
    }
    const serial = await serialOf(node);
    const mine = certificates.find((c) => c.serial === serial);
    assert.ok(mine, "the node's certificate is in the inventory");
    assert.equal(mine.nodeName, "cert-node");
    assert.equal(mine.current, true);
    const { certificate } = await certs.getCertificate({ serial });
    assert.equal(certificate?.status, CertificateStatus.VALID);
    assert.equal(certificate?.caFingerprint, cluster.controller.ca.fingerprint);
    assert.ok(certificate?.uris.some((uri) => uri.startsWith("corral://node/")));
    assert.match(certificate?.fingerprint ?? "", /^sha256:[0-9a-f]{64}$/);
    await assert.rejects(certs.getCertificate({ serial: "abc123" }), (e) => codeOf(e) === Code.NotFound);
    await assert.rejects(
      certs.getCertificate({ serial: "not hex!" }),
      (e) => codeOf(e) === Code.InvalidArgument,
    );
  });

  it("counts what was issued in the last day and what is valid, by kind", async () => {
    const stats = await certs.getStatistics({});
    assert.ok(stats.issuedLast24h >= 3, `issued ${stats.issuedLast24h}`);
    assert.ok((stats.validByKind.node ?? 0) >= 1);
    assert.ok((stats.validByKind.operator ?? 0) >= 1);
    assert.equal(stats.rotation?.inProgress, false);
    assert.ok(stats.expiringWithin30d >= 1, "the node's one-day certificate expires within 30 days");
  });

  describe("ValidateCertificate", () => {
    it("answers valid for a certificate of ours", async () => {
      const answer = await certs.validateCertificate({
        pem: await readFile(join(node.dataDir, "node.crt"), "utf8"),
      });
      assert.equal(answer.valid, true, answer.problems.join("; "));
      assert.equal(answer.chainsToCa, true);
      assert.equal(answer.known, true);
      assert.equal(answer.certificate?.status, CertificateStatus.VALID);
      assert.deepEqual(answer.problems, []);
    });

    it("answers expired for one past its end", async () => {
      const issued = await cluster.controller.ca.issue({
        commonName: "short-lived",
        dnsNames: [],
        ipAddresses: [],
        uris: [operatorIdentityUri("viewer", "short-lived")],
        validityMs: 1,
        usage: "client",
      });
      await new Promise((resolve) => setTimeout(resolve, 20));
      const answer = await certs.validateCertificate({ pem: issued.certificatePem });
      assert.equal(answer.valid, false);
      assert.equal(answer.expired, true);
      assert.equal(answer.chainsToCa, true);
      assert.equal(answer.certificate?.status, CertificateStatus.EXPIRED);
      assert.match(answer.problems.join("\n"), /expired at/);
    });

    it("answers foreign for one from another CA", async () => {
      const foreign = await CertificateAuthority.loadOrCreate(foreignDir, "elsewhere");
      const issued = await foreign.issue({
        commonName: "stranger",
        dnsNames: ["stranger"],
        ipAddresses: [],
        validityMs: 3_600_000,
        usage: "server",
      });
      const answer = await certs.validateCertificate({ pem: issued.certificatePem });
      assert.equal(answer.valid, false);
      assert.equal(answer.chainsToCa, false);
      assert.equal(answer.known, false);
      assert.equal(answer.caFingerprint, "");
      assert.match(answer.problems.join("\n"), /does not chain to this cluster's CA/);
    });

    it("answers revoked once it is revoked", async () => {
      const issued = await cluster.controller.ca.issue({
        commonName: "to-revoke",
        dnsNames: [],
        ipAddresses: [],
        uris: [operatorIdentityUri("operator", "to-revoke")],
        validityMs: 3_600_000,
        usage: "client",
      });
      const before = await certs.validateCertificate({ pem: issued.certificatePem });
      assert.equal(before.valid, true, before.problems.join("; "));
      const serial = before.certificate?.serial ?? "";
      const { revoked } = await certs.revokeCertificate({ serial, reason: "lost laptop" });
      assert.equal(revoked[0]?.status, CertificateStatus.REVOKED);
      assert.equal(revoked[0]?.revocationReason, "lost laptop");
      const after = await certs.validateCertificate({ pem: issued.certificatePem });
      assert.equal(after.valid, false);
      assert.equal(after.revoked, true);
      assert.equal(after.certificate?.status, CertificateStatus.REVOKED);
      assert.match(after.problems.join("\n"), /revoked .*lost laptop/);
      await assert.rejects(
        certs.revokeCertificate({ serial, reason: "again" }),
        (e) => codeOf(e) === Code.FailedPrecondition,
      );
    });

    it("refuses what is not a PEM certificate with INVALID_ARGUMENT", async () => {
      for (const pem of [
        "",
        "hello",
        "-----BEGIN CERTIFICATE-----\n!!!notbase64!!!\n-----END CERTIFICATE-----\n",
        "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
        `-----BEGIN CERTIFICATE-----\n${"A".repeat(70_000)}\n-----END CERTIFICATE-----\n`,
      ]) {
        await assert.rejects(
          certs.validateCertificate({ pem }),
          (e) => codeOf(e) === Code.InvalidArgument,
          `INVALID_ARGUMENT for ${JSON.stringify(pem.slice(0, 40))}`,
        );
      }
      await assert.rejects(certs.revokeCertificate({}), (e) => codeOf(e) === Code.InvalidArgument);
      const { certificates } = await certs.listCertificates({ kind: CertificateKind.SERVER });
      await assert.rejects(
        certs.revokeCertificate({ serial: certificates[0]?.serial ?? "" }),
        (e) => codeOf(e) === Code.FailedPrecondition,
      );
      await assert.rejects(certs.renewCertificate({ node: "" }), (e) => codeOf(e) === Code.InvalidArgument);
      await assert.rejects(
        certs.rotateCa({ overlap: { seconds: 0n, nanos: 5_000_000 } }),
        (e) => codeOf(e) === Code.InvalidArgument,
      );
    });
  });

  it("renews a node's certificate when an admin asks, the node holding its key", async () => {
    const before = await serialOf(node);
    const answer = await certs.renewCertificate({ node: "cert-node", wait: true }, { timeoutMs: 30_000 });
    assert.ok(answer.certificate !== undefined, "the new certificate comes back");
    assert.notEqual(answer.certificate.serial, before);
    await eventually(
      async () => ((await serialOf(node)) === answer.certificate?.serial ? true : undefined),
      10_000,
      "the node stores its new certificate",
    );
    const { certificates } = await certs.listCertificates({ node: "cert-node", currentOnly: true });
    assert.deepEqual(
      certificates.map((c) => c.serial),
      [answer.certificate.serial],
    );
    assert.equal(node.agent.link.state.value, "CONNECTED");
  });

  it("refuses a revoked node certificate on the very next call, over real TLS", async () => {
    const other = await startTestAgent({ name: "to-be-revoked" });
    try {
      await joinWithToken(cluster, other);
      const transport = await nodeTransport(other, cluster.clusterPort);
      const agentApi = createClient(AgentService, transport);
      await agentApi.heartbeat({ cpuUsage: 1 });
      const { revoked } = await certs.revokeCertificate({ node: "to-be-revoked", reason: "compromised" });
      assert.ok(revoked.length >= 1);
      await assert.rejects(agentApi.heartbeat({ cpuUsage: 1 }), (error) => {
        assert.equal(codeOf(error), Code.Unauthenticated);
        assert.match((error as Error).message, /revoked/);
        return true;
      });
      await eventually(
        async () => (other.agent.link.state.value === "UNAUTHENTICATED" ? true : undefined),
        20_000,
        "the agent learns that it must join again",
      );
    } finally {
      await other.close();
    }
  });

  it("lists join requests as the CSR approval queue, and approves them", async () => {
    const waiting = await startTestAgent({ name: "csr-node" });
    try {
      const joined = waiting.agent.joinIfAsked(
        `127.0.0.1:${cluster.clusterPort}`,
        undefined,
        AbortSignal.timeout(20_000),
      );
      const request = await eventually(async () => {
        const { requests } = await certs.listCertificateRequests({});
        return requests.find((r) => r.request?.name === "csr-node");
      });
      assert.match(request.keyFingerprint, /^sha256:[0-9a-f]{64}$/);
      assert.equal(request.keyAlgorithm, "ECDSA P-256");
      assert.match(request.csrSubject, /CN=csr-node/);
      const approved = await certs.approveCertificateRequest({ request: "csr-node" });
      assert.ok(approved.request?.request?.decidedBy);
      await joined;
      const { certificates } = await certs.listCertificates({ node: "csr-node" });
      assert.equal(certificates.length, 1);
    } finally {
      await waiting.close();
    }
  });
});

describe("expiry warnings", () => {
  it("warn about a node certificate that was not renewed in time", async () => {
    const cluster = await startTestController({ identity: { nodeCertificateLifetime: "3s" } });
    const node = await startTestAgent({ name: "gone-quiet" });
    try {
      await joinWithToken(cluster, node);
      const certs = plaintextClient(CertificatesService, cluster.bridgePort);
      const serial = await serialOf(node);
      const quiet = await certs.getStatistics({});
      assert.ok(!quiet.warnings.some((w) => w.serial === serial), "no warning while it is young");
      // Stopped, the agent cannot renew at two thirds of the certificate's life.
      await node.close();
      const warning = await eventually(
        async () => (await certs.getStatistics({})).warnings.find((w) => w.serial === serial),
        10_000,
        "a warning about the certificate",
      );
      assert.equal(warning.kind, CertificateKind.NODE);
      assert.match(warning.message, /node certificate "gone-quiet" .* was not renewed/);
    } finally {
      await node.close();
      await cluster.close();
    }
  });
});
