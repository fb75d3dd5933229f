import assert from "node:assert/strict";
import { mkdir, mkdtemp, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { create, type DescMessage, fromBinary, type MessageInitShape, toBinary } from "@bufbuild/protobuf";
import { type ChannelCredentials, credentials } from "@grpc/grpc-js";
import {
  NodeStatus,
  GetNodeRequestSchema as NodesGetNodeRequestSchema,
  NodesService,
} from "../../src/gen/corral/v1/nodes_pb.ts";
import { Role, TokensService } from "../../src/gen/corral/v1/tokens_pb.ts";
import {
  HealthCheckRequestSchema,
  HealthCheckResponse_ServingStatus,
  HealthCheckResponseSchema,
} from "../../src/gen/grpc/health/v1/health_pb.ts";
import {
  GetLocalNodeIdResponseSchema,
  GetNodeRequestSchema,
  SetNodeRequestSchema,
} from "../../src/gen/hub_client_pb.ts";
import { NodeInfoRequestSchema } from "../../src/gen/node_pb.ts";
import { eventually } from "../helpers/agent.ts";
import { plaintextClient } from "../helpers/clients.ts";
import {
  type AgentProcess,
  type ControllerProcess,
  CorralProcesses,
  runCorral as corral,
  startAgentProcess,
  startControllerProcess,
} from "../helpers/corral-processes.ts";
import { connectCaller, grpcCaller, type Outcome } from "./fuzz-targets.ts";

/**
 * The single calls of issue #17 that took a process down or stalled it, each against real processes
 * (a `corral controller` and `corral up` agents, children of the test): user text with a newline or
 * non-ASCII letters in a refusal, a 7 000-character id that overflowed the response's headers, a
 * 100 000-character id that hung an agent's local API and stalled its controller link.
 */

const encode = <S extends DescMessage>(schema: S, init: MessageInitShape<S>): Buffer =>
  Buffer.from(toBinary(schema, create(schema, init)));

describe("one call no longer crashes or stalls a process", { timeout: 300_000 }, () => {
  const processes = new CorralProcesses();
  const closers: (() => void)[] = [];
  let root: string;
  let controller: ControllerProcess;
  let agent: AgentProcess;
  let ca: Buffer;
  let viewer: string;
  let webUrl: string;
  let removed: { key: Buffer; cert: Buffer };
  let agentListener: string;

  const caller = (address: string, creds: ChannelCredentials, bearer?: string) => {
    const made = grpcCaller(address, creds, { deadlineMs: 20_000, ...(bearer ? { bearer } : {}) });
    closers.push(() => made.client.close());
    return made.call;
  };
  const servingHealth = async (call: ReturnType<typeof caller>) => {
    const outcome = await call("/grpc.health.v1.Health/Check", encode(HealthCheckRequestSchema, {}));
    assert.equal(outcome.code, "OK", outcome.message);
    const answer = fromBinary(HealthCheckResponseSchema, outcome.response ?? Buffer.alloc(0));
    return HealthCheckResponse_ServingStatus[answer.status];
  };
  /** The same controller process, still answering. */
  const controllerServes = async () => {
    assert.ok(
      !controller.process.exited,
      `the controller exited:\n${controller.process.stderr().slice(-3000)}`,
    );
    assert.equal(await servingHealth(caller(controller.bridge, credentials.createInsecure())), "SERVING");
  };
  const agentServes = async () => {
    assert.ok(!agent.process.exited, `the agent exited:\n${agent.process.stderr().slice(-3000)}`);
    assert.equal(await servingHealth(caller(agent.localApi, credentials.createInsecure())), "SERVING");
  };

  before(async () => {
    root = await mkdtemp(join(tmpdir(), "corral-one-call-"));
    await mkdir(join(root, "controller"));
    controller = await startControllerProcess(processes, join(root, "controller"));
    webUrl = /\n\s+web\s+(\S+)\n/.exec(controller.process.stdout())?.[1] ?? "";
    ca = await readFile(join(root, "controller", "data", "admin", "ca.crt"));
    const tokens = plaintextClient(TokensService, controller.bridgePort);
    const { token } = await tokens.createToken({ role: Role.NODE, description: "agents", uses: 2 });
    viewer = (await tokens.createToken({ role: Role.VIEWER, description: "viewer" })).token;
    // A node name with a non-ASCII letter is a name like any other.
    agent = await startAgentProcess(processes, join(root, "agent"), [
      "--name",
      "Büro-7",
      "--join",
      controller.cluster,
      "--token",
      token,
    ]);
    agentListener = /cluster listener\s+(\S+)/.exec(agent.process.stdout())?.[1] ?? "";
    // A second node, removed again: its certificate is what a removed node still holds.
    const leaver = await startAgentProcess(processes, join(root, "leaver"), [
      "--name",
      "leaver",
      "--join",
      controller.cluster,
      "--token",
      token,
    ]);
    const nodes = plaintextClient(NodesService, controller.bridgePort);
    await eventually(
      async () => {
        const listed = (await nodes.listNodes({})).nodes;
        return listed.filter((n) => n.status === NodeStatus.READY).length === 3 ? true : undefined;
      },
      30_000,
      "the controller and both agents ready",
    );
    // The agent writes its credentials once it has joined; wait for them (bounded).
    removed = await eventually(
      async () => ({
        key: await readFile(join(root, "leaver", "node.key")),
        cert: await readFile(join(root, "leaver", "node.crt")),
      }),
      15_000,
      "the removed node's credentials on disk",
    );
    await leaver.process.stop();
    await nodes.removeNode({ node: "leaver" });
  });

  after(async () => {
    for (const close of closers) close();
    await processes.killAll();
    if (root !== undefined) await rm(root, { recursive: true, force: true });
  });

  it('answers an anonymous health check for service "x\\ny" on the TLS listener with NOT_FOUND', async () => {
    const anonymous = caller(controller.cluster, credentials.createSsl(ca));
    const outcome = await anonymous(
      "/grpc.health.v1.Health/Check",
      encode(HealthCheckRequestSchema, { service: "x\ny" }),
    );
    assert.deepEqual(
      { code: outcome.code, message: outcome.message },
      { code: "NOT_FOUND", message: 'service "x\\ny" not found' },
    );
    await controllerServes();
  });

  it("shows node Büro-7 with the CLI, and says NOT_FOUND for Büro-8", async () => {
    const shown = await corral(["--server", controller.bridge, "nodes", "show", "Büro-7"]);
    assert.equal(shown.code, 0, shown.stderr);
    assert.match(shown.stdout, /name:\s+Büro-7/);
    const missing = await corral(["--server", controller.bridge, "nodes", "show", "Büro-8"]);
    assert.notEqual(missing.code, 0);
    assert.match(missing.stderr, /NOT_FOUND: node "Büro-8" not found/);
    await controllerServes();
  });

  it("answers a 7 000-character node_id with NOT_FOUND and a shortened message, not RESOURCE_EXHAUSTED", async () => {
    const bridge = caller(controller.bridge, credentials.createInsecure());
    // 16 000 characters is still below the edge's bound on a text field (16 384).
    for (const length of [7_000, 16_000]) {
      const outcome: Outcome = await bridge(
        "/distributed_llm.NodeService/GetNodeInfo",
        encode(NodeInfoRequestSchema, { nodeId: "x".repeat(length) }),
      );
      assert.equal(outcome.code, "NOT_FOUND", `${length} characters: ${outcome.message.slice(0, 300)}`);
      assert.match(outcome.message, /^node "x+…" not found/);
      assert.ok(outcome.message.length < 1_100, `a message of ${outcome.message.length} characters`);
    }
    await controllerServes();
  });

  it("answers the web listener's Connect clients NOT_FOUND for a non-ASCII id, not HTTP 500", async () => {
    const web = connectCaller(webUrl, { bearer: viewer });
    const outcome = await web(
      "/corral.v1.NodesService/GetNode",
      encode(NodesGetNodeRequestSchema, { node: "Büro-8 ☃" }),
    );
    assert.deepEqual(
      { code: outcome.code, message: outcome.message },
      { code: "NOT_FOUND", message: 'node "Büro-8 ☃" not found (looked up by id and by name)' },
    );
    await controllerServes();
  });

  it("refuses a 100 000-character node_id on the agent's local API at once, and the agent's link stays up", async () => {
    const local = caller(agent.localApi, credentials.createInsecure());
    for (const length of [100_000, 5_000]) {
      const outcome = await local(
        "/nanopinggrpc.hub.HubClientService/getNode",
        encode(GetNodeRequestSchema, { nodeId: "x".repeat(length) }),
      );
      assert.equal(
        outcome.code,
        "INVALID_ARGUMENT",
        `${length} characters: ${outcome.code} ${outcome.message}`,
      );
      assert.match(outcome.message, /^node_id: is \d+ characters/);
    }
    // The agent still counts itself signed in, and the controller still sees it ready and heard from.
    const self = await local("/nanopinggrpc.hub.HubClientService/getLocalNodeId", Buffer.alloc(0));
    assert.equal(
      fromBinary(GetLocalNodeIdResponseSchema, self.response ?? Buffer.alloc(0)).isAuthenticated,
      true,
    );
    const nodes = plaintextClient(NodesService, controller.bridgePort);
    const seen = (await nodes.getNode({ node: "Büro-7" })).node;
    assert.equal(seen?.status, NodeStatus.READY);
    const since = Number(seen?.lastSeenAt?.seconds ?? 0n);
    await eventually(
      async () => {
        const now = (await nodes.getNode({ node: "Büro-7" })).node;
        return now?.status === NodeStatus.READY && Number(now.lastSeenAt?.seconds ?? 0n) > since
          ? true
          : undefined;
      },
      30_000,
      "a heartbeat from the agent after the calls",
    );
    await agentServes();
  });

  it("answers a removed node's certificate on an agent's listener without taking the agent down", async () => {
    const asRemoved = caller(agentListener, credentials.createSsl(ca, removed.key, removed.cert));
    const outcome = await asRemoved(
      "/grpc.health.v1.Health/Check",
      encode(HealthCheckRequestSchema, { service: "Büro\n7" }),
    );
    assert.notEqual(outcome.code, "UNAVAILABLE", outcome.message);
    await agentServes();
  });

  it("takes Unicode names and metadata, and refuses control characters and absurd lengths", async () => {
    const local = caller(agent.localApi, credentials.createInsecure());
    const nodes = plaintextClient(NodesService, controller.bridgePort);
    const set = (name: string, place: string) =>
      local(
        "/nanopinggrpc.hub.HubClientService/setNode",
        encode(SetNodeRequestSchema, {
          name,
          metadata: { items: { ort: { value: { case: "stringValue", value: place } } } },
        }),
      );
    const accepted = await set("Büro-7", "Köln ☃");
    assert.equal(accepted.code, "OK", accepted.message);
    await eventually(
      async () => {
        const node = (await nodes.getNode({ node: "Büro-7" })).node;
        const ort = node?.metadata.ort?.value;
        return ort?.case === "stringValue" && ort.value === "Köln ☃" ? true : undefined;
      },
      15_000,
      "the metadata on the controller",
    );
    for (const [name, why] of [
      ["Bü\u0007ro", /control characters/],
      ["B".repeat(200), /is 200 characters; the limit is 128/],
    ] as const) {
      const refused = await set(name, "Bonn");
      assert.equal(refused.code, "INVALID_ARGUMENT", `${JSON.stringify(name)}: ${refused.message}`);
      assert.match(refused.message, why);
    }
    // The refusals changed nothing: the name and the metadata are the accepted ones.
    const node = (await nodes.getNode({ node: "Büro-7" })).node;
    assert.equal(node?.name, "Büro-7");
    assert.deepEqual(node?.metadata.ort?.value, { case: "stringValue", value: "Köln ☃" });
    await agentServes();
  });
});
