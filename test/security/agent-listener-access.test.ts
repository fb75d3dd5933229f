import assert from "node:assert/strict";
import { X509Certificate } from "node:crypto";
import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import type { DescService } from "@bufbuild/protobuf";
import { type Client, Code, ConnectError, createClient } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import { ControlPlane } from "../../src/gen/control_plane_pb.ts";
import { CertificatesService } from "../../src/gen/corral/v1/certificates_pb.ts";
import { NodesService } from "../../src/gen/corral/v1/nodes_pb.ts";
import { NodeAgent } from "../../src/gen/picontroller_pb.ts";
import { PipelinesService } from "../../src/gen/pipelines_pb.ts";
import { operatorIdentityUri } from "../../src/security/principal.ts";
import { eventually, joinWithToken, startTestAgent, type TestAgent } from "../helpers/agent.ts";
import { plaintextClient } from "../helpers/clients.ts";
import { startTestController, type TestController } from "../helpers/controller.ts";

/**
 * An agent's mTLS listener applies the controller's principal checks: a revoked certificate or a
 * removed node's certificate stops working there too, soon after the controller hears of it, without
 * the agent asking per call (it watches AgentService/WatchAccess).
 */

const codeOf = (error: unknown) => (error instanceof ConnectError ? error.code : undefined);

/** The code a call ends with: "ok", or the gRPC code's name. */
async function outcome(call: Promise<unknown>): Promise<string> {
  try {
    await call;
    return "ok";
  } catch (error) {
    return Code[codeOf(error) ?? Code.Unknown] ?? "Unknown";
  }
}

describe("an agent's listener checks revocation and membership as the controller does", () => {
  let cluster: TestController;
  let a1: TestAgent;
  let a2: TestAgent;
  let caPem: string;

  const clientOn = <S extends DescService>(
    service: S,
    agent: TestAgent,
    cert: string,
    key: string,
  ): Client<S> =>
    createClient(
      service,
      createGrpcTransport({
        baseUrl: `https://${agent.agent.listenAddress}`,
        nodeOptions: { ca: caPem, cert, key },
        defaultTimeoutMs: 5_000,
      }),
    );

  before(async () => {
    cluster = await startTestController();
    caPem = await readFile(join(cluster.controller.adminCredentialsDir, "ca.crt"), "utf8");
    a1 = await startTestAgent({ name: "a1" });
    a2 = await startTestAgent({ name: "a2" });
    await joinWithToken(cluster, a1);
    await joinWithToken(cluster, a2);
  });
  after(async () => {
    await a1?.close();
    await a2?.close();
    await cluster?.close();
  });

  it("refuses a revoked admin certificate on ExecuteCommand, ControlGPIO and pipelines", async () => {
    const admin = await cluster.controller.ca.issue({
      commonName: "admin",
      dnsNames: [],
      ipAddresses: [],
      uris: [operatorIdentityUri("admin", "soon-revoked")],
      validityMs: 3_600_000,
      usage: "client",
    });
    const serial = new X509Certificate(admin.certificatePem).serialNumber;
    const agent = clientOn(NodeAgent, a1, admin.certificatePem, admin.privateKeyPem);
    const pipelines = clientOn(PipelinesService, a1, admin.certificatePem, admin.privateKeyPem);
    const calls = () => [
      outcome(agent.executeCommand({ command: "uptime" })),
      outcome(agent.controlGPIO({ pin: 17 })),
      outcome(pipelines.getPipelines({})),
    ];
    // Before: the listener lets the admin through (whatever the command itself answers).
    const first = await eventually(
      async () => {
        const codes = await Promise.all(calls());
        return codes.includes("Unavailable") ? undefined : codes;
      },
      15_000,
      "the agent's first view of the cluster",
    );
    assert.ok(!first.includes("Unauthenticated"), `before revocation: ${first}`);

    await plaintextClient(CertificatesService, cluster.bridgePort).revokeCertificate({
      serial,
      reason: "test: a lost laptop",
    });
    const after = await eventually(
      async () => {
        const codes = await Promise.all(calls());
        return codes.every((code) => code === "Unauthenticated") ? codes : undefined;
      },
      10_000,
      "every call refused after revocation",
    );
    assert.deepEqual(after, ["Unauthenticated", "Unauthenticated", "Unauthenticated"]);
    await assert.rejects(agent.executeCommand({ command: "uptime" }), /was revoked/);
  });

  it("refuses a removed node's certificate on messages.ControlPlane of another agent", async () => {
    const [cert, key] = await Promise.all(
      ["node.crt", "node.key"].map((file) => readFile(join(a1.dataDir, file), "utf8")),
    );
    const control = clientOn(ControlPlane, a2, cert as string, key as string);
    await eventually(
      async () => ((await outcome(control.ping({}))) === "ok" ? true : undefined),
      15_000,
      "a1 pings a2 while a member",
    );
    await plaintextClient(NodesService, cluster.bridgePort).removeNode({ node: "a1" });
    await eventually(
      async () => ((await outcome(control.ping({}))) === "Unauthenticated" ? true : undefined),
      10_000,
      "a1 refused on a2 once removed",
    );
    await assert.rejects(control.getCartIds({}), /no longer a member/);
  });
});
