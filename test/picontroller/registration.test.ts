import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { Code, ConnectError, createClient } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import { JoinService } from "../../src/gen/corral/v1/join_pb.ts";
import { NodeService } from "../../src/gen/node_pb.ts";
import { ControlPlane } from "../../src/gen/picontroller_pb.ts";
import { createKeyAndCsr } from "../../src/security/node-key.ts";
import { plaintextClient } from "../helpers/clients.ts";
import { startTestController, type TestController } from "../helpers/controller.ts";

const codeOf = (error: unknown) => (error instanceof ConnectError ? error.code : undefined);
const gib = 1024n ** 3n;

describe("Pi-Controller RegisterNode: what the caller sent is kept, and a stranger hears 'pending' at once", () => {
  let cluster: TestController;
  before(async () => {
    cluster = await startTestController();
  });
  after(() => cluster.close());

  /** A caller over the cluster listener's TLS, with no client certificate unless given one. */
  const tlsClient = (tls: { cert?: string; key?: string } = {}) =>
    createClient(
      ControlPlane,
      createGrpcTransport({
        baseUrl: `https://127.0.0.1:${cluster.clusterPort}`,
        nodeOptions: { ca: cluster.controller.ca.certificatePem, ...tls },
      }),
    );
  const bridge = () => plaintextClient(ControlPlane, cluster.bridgePort);
  const stateOf = async (name: string) =>
    (await bridge().syncClusterState({ requesterId: "test" })).nodes.find((node) => node.name === name);

  it("stores and returns resources as sent (token); max_layers follows corral's rule", async () => {
    const { token } = await cluster.controller.context.tokens.create({
      role: "node",
      ttlMs: 60_000,
      uses: 1,
      description: "t",
      createdBy: "t",
      caFingerprint: cluster.controller.ca.fingerprint,
    });
    const key = await createKeyAndCsr("pi-full");
    const sent = {
      cpuCores: 4,
      memoryBytes: 8n * gib,
      diskBytes: 64n * gib,
      gpus: ["Hailo-8", "NVIDIA Jetson Orin"],
      architecture: "arm64",
      os: "linux",
    };
    const answer = await tlsClient().registerNode(
      { name: "pi-full", address: "127.0.0.1:7998", csrPem: key.csrPem, resources: sent },
      { headers: { "corral-join-token": token } },
    );
    assert.equal(answer.status, "ready");
    assert.ok(answer.certificatePem.includes("BEGIN CERTIFICATE"));

    const state = await stateOf("pi-full");
    assert.deepEqual(
      {
        cpuCores: state?.resources?.cpuCores,
        memoryBytes: state?.resources?.memoryBytes,
        diskBytes: state?.resources?.diskBytes,
        gpus: state?.resources?.gpus,
        architecture: state?.resources?.architecture,
        os: state?.resources?.os,
      },
      sent,
    );
    // Distributed LLM sees the same node: GPU names as sent, nothing invented for what was not sent.
    const info = await plaintextClient(NodeService, cluster.bridgePort).getNodeInfo({ nodeId: "pi-full" });
    assert.deepEqual(
      info.node?.resources?.gpus.map((gpu) => ({ name: gpu.name, memoryMb: gpu.memoryMb, uuid: gpu.uuid })),
      [
        { name: "Hailo-8", memoryMb: 0n, uuid: "" },
        { name: "NVIDIA Jetson Orin", memoryMb: 0n, uuid: "" },
      ],
    );
    // GPUs of unknown memory hold no layers by the rule: 8 GiB of system memory / 512 MiB.
    assert.equal(info.node?.resources?.maxLayers, 16);
  });

  it("admits at once when the bridge (an admin on loopback) registers the node", async () => {
    const key = await createKeyAndCsr("pi-bridge");
    const answer = await bridge().registerNode({
      name: "pi-bridge",
      csrPem: key.csrPem,
      resources: { cpuCores: 2, memoryBytes: 2n * gib },
    });
    assert.equal(answer.status, "ready");
    assert.equal(answer.requestId, 0n);
    assert.equal((await stateOf("pi-bridge"))?.resources?.memoryBytes, 2n * gib);
  });

  it("answers a stranger 'pending' without blocking, again on asking again, and the certificate once accepted", async () => {
    const key = await createKeyAndCsr("pi-stranger");
    const registration = {
      name: "pi-stranger",
      address: "127.0.0.1:7997",
      csrPem: key.csrPem,
      resources: { cpuCores: 4, memoryBytes: 4n * gib, architecture: "arm64", os: "linux" },
    };
    // Well within this deadline: the old code waited here for an operator and ran out of time.
    const first = await tlsClient().registerNode(registration, { timeoutMs: 10_000 });
    assert.equal(first.success, true);
    assert.equal(first.status, "pending");
    assert.ok(first.requestId > 0n);
    assert.equal(first.certificatePem, "");
    assert.equal(await stateOf("pi-stranger"), undefined, "a pending node is no member yet");

    const again = await tlsClient().registerNode(registration, { timeoutMs: 10_000 });
    assert.equal(again.status, "pending");
    assert.equal(again.requestId, first.requestId, "asking again keeps the same request");

    const join = plaintextClient(JoinService, cluster.bridgePort);
    await join.answerJoinRequest({ request: String(first.requestId), accept: true });
    // What the operator accepted is what joins, whatever a later call says.
    const accepted = await tlsClient().registerNode(
      { ...registration, name: "renamed-by-caller" },
      { timeoutMs: 10_000 },
    );
    assert.equal(accepted.status, "ready");
    assert.equal(accepted.requestId, 0n);
    assert.ok(accepted.certificatePem.includes("BEGIN CERTIFICATE"));
    const state = await stateOf("pi-stranger");
    assert.equal(state?.status, "ready");
    assert.equal(state?.resources?.architecture, "arm64");
    assert.equal(await stateOf("renamed-by-caller"), undefined);

    const board = tlsClient({ cert: accepted.certificatePem, key: key.privateKeyPem });
    await board.reportHealth({ status: "OK" });
    // The certificate is handed out once: the member exists now.
    await assert.rejects(
      tlsClient().registerNode(registration, { timeoutMs: 10_000 }),
      (e) => codeOf(e) === Code.AlreadyExists,
    );
  });

  it("refuses a CSR whose signature does not match its key, before telling anything of a request", async () => {
    const key = await createKeyAndCsr("pi-forged");
    const lines = key.csrPem.trim().split("\n");
    // The signature is the DER's tail: change one base64 character of the last body line.
    const last = lines.length - 2;
    const line = lines[last] ?? "";
    const flipped = line.slice(0, 4) + (line[4] === "A" ? "B" : "A") + line.slice(5);
    const forged = [...lines.slice(0, last), flipped, ...lines.slice(last + 1)].join("\n");
    const before = await cluster.controller.context.joinRequests.list({ includeDecided: true });
    await assert.rejects(
      tlsClient().registerNode({ name: "pi-forged", csrPem: forged }, { timeoutMs: 10_000 }),
      (e) => codeOf(e) === Code.InvalidArgument && /csr_pem/.test(String(e)),
    );
    const afterwards = await cluster.controller.context.joinRequests.list({ includeDecided: true });
    assert.equal(afterwards.length, before.length, "no request was filed");
  });

  it("tells a rejected stranger so on asking again, and admits nothing", async () => {
    const key = await createKeyAndCsr("pi-unwanted");
    const registration = { name: "pi-unwanted", csrPem: key.csrPem };
    const first = await tlsClient().registerNode(registration, { timeoutMs: 10_000 });
    assert.equal(first.status, "pending");
    await plaintextClient(JoinService, cluster.bridgePort).answerJoinRequest({
      request: String(first.requestId),
      accept: false,
      reason: "not ours",
    });
    await assert.rejects(
      tlsClient().registerNode(registration, { timeoutMs: 10_000 }),
      (e) => codeOf(e) === Code.Unauthenticated && /rejected/.test(String(e)) && /not ours/.test(String(e)),
    );
    assert.equal(await stateOf("pi-unwanted"), undefined);
  });
});
