import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import type { DescService } from "@bufbuild/protobuf";
import { type Client, Code, ConnectError, createClient } from "@connectrpc/connect";
import { createGrpcWebTransport } from "@connectrpc/connect-node";
import { NodeOpsService } from "../../src/gen/corral/v1/node_ops_pb.ts";
import { NodeEventType } from "../../src/gen/corral/v1/nodes_pb.ts";
import { SessionService, type WatchClusterResponse } from "../../src/gen/corral/v1/session_pb.ts";
import { Role } from "../../src/gen/corral/v1/tokens_pb.ts";
import { eventually, joinWithToken, startTestAgent, type TestAgent } from "../helpers/agent.ts";
import { startTestController, type TestController } from "../helpers/controller.ts";

/** A client as the dashboard makes it: gRPC-Web over HTTP/1.1 to the web listener, a bearer token. */
function webClient<S extends DescService>(cluster: TestController, service: S, token: string): Client<S> {
  return createClient(
    service,
    createGrpcWebTransport({
      baseUrl: cluster.controller.webUrl,
      httpVersion: "1.1",
      interceptors: [
        (next) => (request) => {
          request.header.set("authorization", `Bearer ${token}`);
          return next(request);
        },
      ],
    }),
  );
}

async function accessToken(cluster: TestController, role: "viewer" | "operator" | "admin"): Promise<string> {
  const { token } = await cluster.controller.context.tokens.create({
    role,
    ttlMs: 600_000,
    uses: 0,
    description: "web test",
    createdBy: "test",
    caFingerprint: cluster.controller.ca.fingerprint,
  });
  return token;
}

const denied = (code: Code) => (error: unknown) => error instanceof ConnectError && error.code === code;

describe("the dashboard's own calls on the web listener", () => {
  let cluster: TestController;
  let agent: TestAgent;
  let operator = "";
  let viewer = "";

  before(async () => {
    cluster = await startTestController();
    agent = await startTestAgent({ name: "web-agent" });
    await joinWithToken(cluster, agent);
    operator = await accessToken(cluster, "operator");
    viewer = await accessToken(cluster, "viewer");
  });

  after(async () => {
    await agent?.close();
    await cluster?.close();
  });

  test("WhoAmI names the role and what the access table lets it call", async () => {
    const asOperator = await webClient(cluster, SessionService, operator).whoAmI({});
    assert.equal(asOperator.role, Role.OPERATOR);
    assert.match(asOperator.principal, /^operator:token:/);
    assert.ok(asOperator.allowedMethods.includes("/corral.v1.NodeOpsService/Exec"));
    assert.ok(!asOperator.allowedMethods.includes("/corral.v1.TokensService/CreateToken"));
    const asViewer = await webClient(cluster, SessionService, viewer).whoAmI({});
    assert.equal(asViewer.role, Role.VIEWER);
    assert.ok(asViewer.allowedMethods.includes("/corral.v1.NodesService/WatchNodes"));
    assert.ok(!asViewer.allowedMethods.includes("/corral.v1.NodeOpsService/Exec"));
    await assert.rejects(
      createClient(
        SessionService,
        createGrpcWebTransport({ baseUrl: cluster.controller.webUrl, httpVersion: "1.1" }),
      ).whoAmI({}),
      denied(Code.Unauthenticated),
    );
  });

  test("WatchCluster carries the node snapshot, the join requests and then live changes on one stream", async () => {
    const stop = new AbortController();
    const seen: WatchClusterResponse[] = [];
    const reading = (async () => {
      try {
        for await (const message of webClient(cluster, SessionService, viewer).watchCluster(
          {},
          { signal: stop.signal },
        ))
          seen.push(message);
      } catch (error) {
        if (!stop.signal.aborted) throw error;
      }
    })();
    try {
      const synced = () =>
        seen.some((m) => m.event.case === "node" && m.event.value.type === NodeEventType.SYNCED)
          ? true
          : undefined;
      await eventually(async () => synced(), 10_000, "nodes SYNCED");
      const names = seen.flatMap((m) =>
        m.event.case === "node" && m.event.value.type === NodeEventType.SNAPSHOT
          ? [m.event.value.node?.name]
          : [],
      );
      assert.ok(names.includes("web-agent"), `snapshot names ${names.join(", ")}`);
      await eventually(
        async () => (seen.some((m) => m.event.case === "joinRequests") ? true : undefined),
        10_000,
        "join list",
      );
      await eventually(
        async () =>
          seen.some((m) => m.event.case === "model" && m.event.value.type === 2) ? true : undefined,
        10_000,
        "models SYNCED",
      );
      // A change after the snapshot arrives on the same stream.
      const second = await startTestAgent({ name: "web-agent-2" });
      try {
        await joinWithToken(cluster, second);
        await eventually(
          async () =>
            seen.some(
              (m) =>
                m.event.case === "node" &&
                m.event.value.type === NodeEventType.PUT &&
                m.event.value.node?.name === "web-agent-2",
            )
              ? true
              : undefined,
          10_000,
          "web-agent-2 PUT",
        );
      } finally {
        await second.close();
      }
    } finally {
      stop.abort();
      await reading;
    }
  });

  test("Exec runs an allow-listed command on the named node for operators only", async () => {
    const ops = webClient(cluster, NodeOpsService, operator);
    const result = await ops.exec({ node: "web-agent", command: "uptime" });
    assert.equal(result.exitCode, 0);
    assert.match(result.stdout, /load average/);
    assert.notEqual(result.auditId, "");
    await assert.rejects(
      ops.exec({ node: "web-agent", command: "rm", args: ["-rf", "/"] }),
      denied(Code.PermissionDenied),
    );
    await assert.rejects(
      webClient(cluster, NodeOpsService, viewer).exec({ node: "web-agent", command: "uptime" }),
      denied(Code.PermissionDenied),
    );
    await assert.rejects(ops.exec({ node: "no-such-node", command: "uptime" }), denied(Code.NotFound));
  });

  test("TailLogs streams the node's log: recent lines, then new ones as they are written", async () => {
    agent.agent.logRing.write("info", "written before the tail");
    const lines: string[] = [];
    for await (const line of webClient(cluster, NodeOpsService, viewer).tailLogs(
      { node: "web-agent", tail: 50 },
      { signal: AbortSignal.timeout(10_000) },
    )) {
      lines.push(line.message);
      if (line.message === "written before the tail")
        agent.agent.logRing.write("warn", "written during the tail");
      if (line.message === "written during the tail") break;
    }
    assert.deepEqual(
      lines.filter((l) => l.startsWith("written")),
      ["written before the tail", "written during the tail"],
    );
  });
});
