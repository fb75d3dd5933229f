import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { Code, ConnectError } from "@connectrpc/connect";
import { ConnectionState, HubClientService } from "../../src/gen/hub_client_pb.ts";
import { HubServerService } from "../../src/gen/hub_server_pb.ts";
import { eventually, startTestAgent } from "../helpers/agent.ts";
import { plaintextClient } from "../helpers/clients.ts";
import { startTestController, type TestController } from "../helpers/controller.ts";

const codeOf = (error: unknown) => (error instanceof ConnectError ? error.code : undefined);

describe("joining", () => {
  let cluster: TestController;
  before(async () => {
    cluster = await startTestController({ node: { name: "My Controller" } });
  });
  after(() => cluster.close());

  const newToken = async (uses = 1) =>
    (
      await cluster.controller.context.tokens.create({
        role: "node",
        ttlMs: 60_000,
        uses,
        description: "test",
        createdBy: "test",
        caFingerprint: cluster.controller.ca.fingerprint,
      })
    ).token;

  it("admits a node with a token at once, and the node heartbeats to ready", async () => {
    const node = await startTestAgent({ name: "token-node" });
    try {
      await node.agent.joinIfAsked(
        `127.0.0.1:${cluster.clusterPort}`,
        await newToken(),
        AbortSignal.timeout(20_000),
      );
      await eventually(
        async () => (node.agent.link.state.value === "CONNECTED" ? true : undefined),
        15_000,
        "CONNECTED",
      );
      const record = await cluster.controller.context.registry.get("token-node");
      assert.equal(record.status, "ready");
      assert.equal(record.id, node.agent.identity.nodeId);
      assert.ok(record.resources.cpuCores >= 1, "resources were reported");
      assert.ok(record.address.length > 0 && record.port > 0, "the node's listener address was reported");
    } finally {
      await node.close();
    }
  });

  it("refuses a spent token", async () => {
    const token = await newToken(1);
    const first = await startTestAgent({ name: "first" });
    const second = await startTestAgent({ name: "second" });
    try {
      await first.agent.joinIfAsked(`127.0.0.1:${cluster.clusterPort}`, token, AbortSignal.timeout(20_000));
      await assert.rejects(
        second.agent.joinIfAsked(`127.0.0.1:${cluster.clusterPort}`, token, AbortSignal.timeout(20_000)),
        /no uses left/,
      );
    } finally {
      await Promise.all([first.close(), second.close()]);
    }
  });

  it("follows NanoPing's authenticate-by-request flow, accepted on the controller's stream", async () => {
    const node = await startTestAgent({ name: "request-node" });
    const hubClient = plaintextClient(HubClientService, node.localPort);
    const states: ConnectionState[] = [];
    const watching = new AbortController();
    const stateReader = (async () => {
      for await (const message of hubClient.streamConnectionState({}, { signal: watching.signal }))
        states.push(message.state);
    })().catch(() => undefined);
    const operators = new AbortController();
    try {
      const { nodeId } = await hubClient.getLocalNodeId({});
      const set = await hubClient.setNode({
        nodeId,
        name: "My NanoPing Client",
        metadata: {
          items: {
            type: { value: { case: "stringValue", value: "my-type" } },
            random_zero_bytes: { value: { case: "bytesValue", value: new Uint8Array(10) } },
          },
        },
      });
      assert.equal(set.node?.id, nodeId);
      assert.equal(set.node?.name, "My NanoPing Client");

      // The request reaches the controller before anyone listens: it must wait, not fail.
      const authenticating = hubClient.authenticateByRequest({
        hubServerAddress: `http://127.0.0.1:${cluster.clusterPort}`,
      });
      await eventually(async () =>
        (await cluster.controller.context.joinRequests.list({ includeDecided: false })).length > 0
          ? true
          : undefined,
      );
      const hub = plaintextClient(HubServerService, cluster.bridgePort);
      async function* answers() {
        for await (const request of pending) {
          assert.equal(request.node?.name, "My NanoPing Client");
          yield { requestId: request.requestId, accept: true };
          return;
        }
      }
      const pending = hub.authenticationByRequests(answers(), { signal: operators.signal });
      await authenticating;
      await eventually(
        async () => (states.includes(ConnectionState.CONNECTED) ? true : undefined),
        15_000,
        "CONNECTED state",
      );
      assert.equal(states[0], ConnectionState.UNAUTHENTICATED, "the current state comes first");

      await assert.rejects(
        hubClient.authenticateByRequest({ hubServerAddress: `http://127.0.0.1:${cluster.clusterPort}` }),
        (e: unknown) =>
          codeOf(e) === Code.AlreadyExists &&
          (e as ConnectError).rawMessage === "Client is already authenticated",
      );

      const nodeHub = plaintextClient(HubServerService, node.localPort);
      const all = await nodeHub.getNodes({});
      const names = all.nodes.map((n) => n.name);
      assert.equal(names[0], "My Controller", "the hub's own node comes first");
      assert.ok(names.includes("My NanoPing Client"));
      const typed = await nodeHub.getNodes({
        metadataFilters: { type: { value: { case: "stringValue", value: "my-type" } } },
      });
      assert.deepEqual(
        typed.nodes.map((n) => n.name),
        ["My NanoPing Client"],
      );
    } finally {
      operators.abort();
      watching.abort();
      await stateReader;
      await node.close();
    }
  });

  it("answers UNAUTHENTICATED when an operator rejects the request", async () => {
    const node = await startTestAgent({ name: "rejected-node" });
    try {
      const hubClient = plaintextClient(HubClientService, node.localPort);
      const authenticating = hubClient.authenticateByRequest({
        hubServerAddress: `http://127.0.0.1:${cluster.clusterPort}`,
      });
      const request = await eventually(async () =>
        (await cluster.controller.context.joinRequests.list({ includeDecided: false })).find(
          (r) => r.name === "rejected-node",
        ),
      );
      await cluster.controller.context.joinRequests.answer(request.id, false, "test", "not this one");
      await assert.rejects(
        authenticating,
        (e: unknown) => codeOf(e) === Code.Unauthenticated && /not this one/.test(String(e)),
      );
      assert.equal(node.agent.link.state.value, "UNAUTHENTICATED");
    } finally {
      await node.close();
    }
  });
});

describe("joining with a short authenticationByRequest timeout", () => {
  it("answers DEADLINE_EXCEEDED when nobody answers in time", async () => {
    const cluster = await startTestController({ hubServer: { authenticationByRequest: { timeout: "1s" } } });
    const node = await startTestAgent({ name: "ignored-node" });
    try {
      const hubClient = plaintextClient(HubClientService, node.localPort);
      await assert.rejects(
        hubClient.authenticateByRequest({ hubServerAddress: `http://127.0.0.1:${cluster.clusterPort}` }),
        (e: unknown) => codeOf(e) === Code.DeadlineExceeded,
      );
      const [expired] = await cluster.controller.context.joinRequests.list({ includeDecided: true });
      assert.equal(expired?.state, "expired");
    } finally {
      await node.close();
      await cluster.close();
    }
  });

  it("answers UNAVAILABLE when the hub cannot be reached", async () => {
    const node = await startTestAgent({ name: "lonely-node" });
    try {
      const hubClient = plaintextClient(HubClientService, node.localPort);
      await assert.rejects(
        hubClient.authenticateByRequest({ hubServerAddress: "http://127.0.0.1:1" }),
        (e: unknown) => codeOf(e) === Code.Unavailable,
      );
    } finally {
      await node.close();
    }
  });
});
