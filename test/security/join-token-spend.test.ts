import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { type Client, Code, ConnectError, createClient } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import { JoinService } from "../../src/gen/corral/v1/join_pb.ts";
import { createKeyAndCsr } from "../../src/security/node-key.ts";
import { nodeToken } from "../helpers/agent.ts";
import { startTestController, type TestController } from "../helpers/controller.ts";

/**
 * A join token's uses are spent only when a node is admitted: joins refused on the way (a name already
 * taken, a CSR whose signature does not verify) leave the count as it was. Real controller, joins as a
 * stranger would make them: anonymous TLS to the cluster listener.
 */

const codeOf = (error: unknown) => (error instanceof ConnectError ? error.code : undefined);

/** The same request with its signature's last byte changed: it parses, but does not verify. */
function badSignature(csrPem: string): string {
  const body = csrPem.replace(/-----[^-]+-----/g, "").replace(/\s+/g, "");
  const der = Buffer.from(body, "base64");
  der[der.length - 1] = (der[der.length - 1] ?? 0) ^ 0x01;
  const lines = der.toString("base64").match(/.{1,64}/g) ?? [];
  return `-----BEGIN CERTIFICATE REQUEST-----\n${lines.join("\n")}\n-----END CERTIFICATE REQUEST-----\n`;
}

describe("a join token's uses", () => {
  let cluster: TestController;
  let join: Client<typeof JoinService>;

  const usesLeft = async (token: string) => {
    const id = token.split(".")[2];
    const record = (await cluster.controller.context.tokens.list(true)).find((t) => t.id === id);
    assert.ok(record, "the token is listed");
    return record.usesLeft;
  };

  before(async () => {
    cluster = await startTestController();
    join = createClient(
      JoinService,
      createGrpcTransport({
        baseUrl: `https://localhost:${cluster.clusterPort}`,
        nodeOptions: { ca: cluster.controller.ca.certificatePem },
        defaultTimeoutMs: 20_000,
      }),
    );
    await cluster.controller.context.registry.register({ id: "taken-id", name: "taken", status: "ready" });
  });
  after(() => cluster?.close());

  it("a name clash or a bad CSR signature costs no use; an admitted node costs one", async () => {
    const token = await nodeToken(cluster, { uses: 3 });
    const clash = await join
      .join({ name: "taken", csrPem: (await createKeyAndCsr("taken")).csrPem, token })
      .catch((e: unknown) => e);
    assert.equal(codeOf(clash), Code.AlreadyExists, String(clash));
    assert.equal(await usesLeft(token), 3, "a name clash spent a use");

    const forged = await join
      .join({ name: "forged", csrPem: badSignature((await createKeyAndCsr("forged")).csrPem), token })
      .catch((e: unknown) => e);
    assert.ok(forged instanceof ConnectError, `the forged CSR was accepted: ${String(forged)}`);
    assert.equal(await usesLeft(token), 3, "a CSR with a bad signature spent a use");
    await assert.rejects(cluster.controller.context.registry.get("forged"), /not found/);

    const admitted = await join.join({
      name: "fresh",
      csrPem: (await createKeyAndCsr("fresh")).csrPem,
      token,
    });
    assert.equal(admitted.node?.name, "fresh");
    assert.equal(await usesLeft(token), 2);
  });

  it("of several joins racing for a token's last use, exactly one is admitted", async () => {
    const token = await nodeToken(cluster, { uses: 1 });
    const names = ["race-a", "race-b", "race-c", "race-d"];
    const csrs = await Promise.all(names.map((name) => createKeyAndCsr(name)));
    const outcomes = await Promise.allSettled(
      names.map((name, i) => join.join({ name, csrPem: csrs[i]?.csrPem ?? "", token })),
    );
    const admitted = outcomes.filter((o) => o.status === "fulfilled");
    assert.equal(admitted.length, 1, "exactly one join was admitted");
    for (const outcome of outcomes) {
      if (outcome.status === "rejected")
        assert.equal(codeOf(outcome.reason), Code.Unauthenticated, String(outcome.reason));
    }
    assert.equal(await usesLeft(token), 0);
    const { nodes } = await cluster.controller.context.registry.list();
    assert.equal(nodes.filter((n) => names.includes(n.name)).length, 1, "the losers' nodes were taken out");
  });
});
