import assert from "node:assert/strict";
import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { AgentService } from "../../src/gen/corral/v1/agent_pb.ts";
import { certificateTimes } from "../../src/security/node-key.ts";
import { eventually, startTestAgent } from "../helpers/agent.ts";
import { startTestController, type TestController } from "../helpers/controller.ts";

describe("CA pinning and certificate renewal", () => {
  let cluster: TestController;
  before(async () => {
    cluster = await startTestController({
      identity: { nodeCertificateLifetime: "6s" },
      liveness: { minInterval: "300ms" },
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

  it("refuses to join a controller whose CA does not match the pinned fingerprint", async () => {
    const node = await startTestAgent({ name: "careful", caFingerprint: `sha256:${"ab".repeat(32)}` });
    try {
      await assert.rejects(
        node.agent.joinIfAsked(
          `127.0.0.1:${cluster.clusterPort}`,
          await token(),
          AbortSignal.timeout(20_000),
        ),
        /not the pinned/,
      );
      assert.equal(node.agent.link.state.value, "UNAUTHENTICATED");
      assert.equal(
        (await cluster.controller.context.registry.list({ nameContains: "careful" })).nodes.length,
        0,
      );
    } finally {
      await node.close();
    }
  });

  it("joins when the pin matches, and renews its certificate at about two thirds of its life", async () => {
    const node = await startTestAgent({ name: "renewer", caFingerprint: cluster.controller.ca.fingerprint });
    try {
      await node.agent.joinIfAsked(
        `127.0.0.1:${cluster.clusterPort}`,
        await token(),
        AbortSignal.timeout(20_000),
      );
      const first = await readFile(join(node.dataDir, "node.crt"), "utf8");
      const times = certificateTimes(first);
      const renewed = await eventually(
        async () => {
          const current = await readFile(join(node.dataDir, "node.crt"), "utf8");
          return current !== first ? current : undefined;
        },
        15_000,
        "a renewed certificate",
      );
      assert.ok(Date.now() >= times.renewAt, "not renewed before two thirds of the lifetime");
      assert.ok(certificateTimes(renewed).notAfter > times.notAfter, "the new certificate lives longer");
      // The node keeps working with the new certificate, past the old one's expiry.
      await new Promise((resolve) => setTimeout(resolve, Math.max(0, times.notAfter - Date.now() + 500)));
      await node.agent.link.client(AgentService).heartbeat({});
      assert.equal(node.agent.link.state.value, "CONNECTED");
    } finally {
      await node.close();
    }
  });
});
