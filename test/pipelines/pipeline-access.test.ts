import assert from "node:assert/strict";
import { mkdir, mkdtemp, readFile, rm, stat, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import type { DescService } from "@bufbuild/protobuf";
import { type Client, Code, ConnectError, createClient, type Interceptor } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import { PipelineRunState, PipelineRunsService } from "../../src/gen/corral/v1/pipelines_pb.ts";
import { PipelinesService } from "../../src/gen/pipelines_pb.ts";
import type { Role } from "../../src/security/principal.ts";
import { eventually, joinWithToken, startTestAgent, type TestAgent } from "../helpers/agent.ts";
import { plaintextClient } from "../helpers/clients.ts";
import { startTestController, type TestController } from "../helpers/controller.ts";
import { guideConfig, processConfig } from "./fixtures.ts";

/**
 * Who may create, start and read pipelines where (issue #17): a node only on itself, process blocks
 * only from admins and only for programs the node allows, configs not for viewers or other nodes.
 * A real controller and two real agents on loopback; every caller over the TLS cluster listener with
 * its own credential (node certificate, operator token, admin certificate).
 */

const codeOf = (error: unknown) => (error instanceof ConnectError ? error.code : undefined);
const denied = (pattern: RegExp) => (error: unknown) => {
  assert.equal(codeOf(error), Code.PermissionDenied, String(error));
  assert.match((error as ConnectError).rawMessage, pattern);
  return true;
};

describe("pipelines cannot be used to escalate privilege", () => {
  let cluster: TestController;
  let a1: TestAgent;
  let a2: TestAgent;
  let ca: string;
  /** Over the bridge (admin on the controller's machine): to see what is stored. */
  let bridge: Client<typeof PipelinesService>;

  const tls = <S extends DescService>(
    service: S,
    credentials: { key?: string; cert?: string; token?: string },
  ): Client<S> => {
    const bearer: Interceptor = (next) => async (request) => {
      if (credentials.token !== undefined) request.header.set("authorization", `Bearer ${credentials.token}`);
      return next(request);
    };
    return createClient(
      service,
      createGrpcTransport({
        baseUrl: `https://127.0.0.1:${cluster.clusterPort}`,
        nodeOptions: {
          ca,
          ...(credentials.key === undefined ? {} : { key: credentials.key, cert: credentials.cert }),
        },
        interceptors: [bearer],
        defaultTimeoutMs: 20_000,
      }),
    );
  };
  const keyPair = async (dir: string, key: string, cert: string) => ({
    key: await readFile(join(dir, key), "utf8"),
    cert: await readFile(join(dir, cert), "utf8"),
  });
  const nodeCredentials = (agent: TestAgent) => keyPair(agent.dataDir, "node.key", "node.crt");
  const adminCredentials = () => keyPair(join(cluster.dataDir, "admin"), "client.key", "client.crt");
  const token = async (role: Exclude<Role, "node">) =>
    (
      await cluster.controller.context.tokens.create({
        role,
        ttlMs: 600_000,
        uses: 0,
        description: "pipeline-access test",
        createdBy: "test",
        caFingerprint: cluster.controller.ca.fingerprint,
      })
    ).token;
  const names = async (nodeId: string) =>
    (await bridge.getPipelines({ nodeId })).pipelines.map((p) => p.name).sort();
  const controllerNodeId = () => cluster.controller.context.facts.controllerNodeId;

  before(async () => {
    cluster = await startTestController();
    ca = await readFile(join(cluster.dataDir, "admin", "ca.crt"), "utf8");
    bridge = plaintextClient(PipelinesService, cluster.bridgePort);
    a1 = await startTestAgent({ name: "pa-a1" });
    a2 = await startTestAgent({ name: "pa-a2", pipelineProcessAllow: ["/bin/sh"] });
    await joinWithToken(cluster, a1);
    await joinWithToken(cluster, a2);
  });
  after(async () => {
    await a1?.close();
    await a2?.close();
    await cluster?.close();
  });

  it("a node certificate may not create, start, change or read pipelines of another node", {
    timeout: 60_000,
  }, async () => {
    const a2Id = a2.agent.identity.nodeId;
    const node = tls(PipelinesService, await nodeCredentials(a1));
    const { pipeline: existing } = await bridge.createPipeline({
      nodeId: a2Id,
      name: "a2-own",
      jsonConfig: guideConfig,
    });
    assert.ok(existing);

    const otherNode = /node:.* may only use the pipelines of its own node, not of pa-a2/;
    await assert.rejects(
      node.createPipeline({ nodeId: a2Id, name: "from-a1", jsonConfig: guideConfig }),
      denied(otherNode),
    );
    await assert.rejects(
      node.startPipeline({ nodeId: a2Id, pipelineIdentifier: { case: "id", value: existing.id } }),
      denied(otherNode),
    );
    await assert.rejects(
      node.updatePipeline({ nodeId: a2Id, id: existing.id, name: "renamed", jsonConfig: guideConfig }),
      denied(otherNode),
    );
    await assert.rejects(node.deletePipeline({ nodeId: a2Id, id: existing.id }), denied(otherNode));
    // Reading another node's configs (argv, env) is refused too, the stream before its first message.
    await assert.rejects(node.getPipelines({ nodeId: a2Id }), denied(otherNode));
    await assert.rejects(node.getPipelineById({ nodeId: a2Id, id: existing.id }), denied(otherNode));
    await assert.rejects(async () => {
      for await (const _ of node.streamPipelines({ nodeId: a2Id })) break;
    }, denied(otherNode));
    // The controller's own node is another node too.
    await assert.rejects(
      node.createPipeline({ nodeId: controllerNodeId(), name: "from-a1", jsonConfig: guideConfig }),
      denied(/may only use the pipelines of its own node/),
    );

    // Nothing changed: a2 has only its own pipeline, never started, under its own name.
    assert.deepEqual(await names(a2Id), ["a2-own"]);
    assert.deepEqual(await names(controllerNodeId()), []);
    const runs = plaintextClient(PipelineRunsService, cluster.bridgePort);
    const summary = (await runs.listPipelines({ nodeId: a2Id })).pipelines.find((p) => p.name === "a2-own");
    assert.equal(summary?.run, undefined, "no run was started on a2");

    // A node's own pipelines stay its own to manage.
    const { pipeline: mine } = await node.createPipeline({
      nodeId: a1.agent.identity.nodeId,
      name: "a1-own",
      jsonConfig: guideConfig,
    });
    assert.equal(mine?.name, "a1-own");
    assert.deepEqual(
      (await node.getPipelines({ nodeId: a1.agent.identity.nodeId })).pipelines.map((p) => p.name),
      ["a1-own"],
    );

    // Through a1's local API (forwarded to the controller under a1's identity): refused as well.
    const local = plaintextClient(PipelinesService, a1.localPort);
    await assert.rejects(
      local.createPipeline({ nodeId: a2Id, name: "via-local", jsonConfig: guideConfig }),
      denied(otherNode),
    );
    assert.deepEqual(await names(a2Id), ["a2-own"]);

    // Straight to a2's own mTLS listener with a1's certificate: only a2's controllers and admins.
    const direct = createClient(
      PipelinesService,
      createGrpcTransport({
        baseUrl: `https://${a2.agent.listenAddress}`,
        nodeOptions: { ca, ...(await nodeCredentials(a1)) },
        defaultTimeoutMs: 20_000,
      }),
    );
    await assert.rejects(
      direct.createPipeline({ nodeId: a2Id, name: "direct", jsonConfig: guideConfig }),
      denied(/may not call nanopinggrpc.pipeline.PipelinesService\/createPipeline on this node/),
    );
    assert.deepEqual(await names(a2Id), ["a2-own"]);
  });

  it("an operator may not store a process block; viewers see run state, not configs", {
    timeout: 60_000,
  }, async () => {
    const a2Id = a2.agent.identity.nodeId;
    const operator = tls(PipelinesService, { token: await token("operator") });
    const adminOnly = /operator:.* may not store a pipeline with a process block: .*only admins/;
    await assert.rejects(
      operator.createPipeline({
        nodeId: a2Id,
        name: "op-process",
        jsonConfig: processConfig(["/bin/sh", "-c", "cat /etc/shadow"]),
      }),
      denied(adminOnly),
    );
    // Turning an existing pipeline into one with a process block is refused the same way.
    const { pipeline } = await operator.createPipeline({
      nodeId: a2Id,
      name: "op-guide",
      jsonConfig: guideConfig,
    });
    assert.ok(pipeline);
    await assert.rejects(
      operator.updatePipeline({
        nodeId: a2Id,
        id: pipeline.id,
        name: "op-guide",
        jsonConfig: processConfig(["/bin/sh"]),
      }),
      denied(adminOnly),
    );
    const stored = (await bridge.getPipelineById({ nodeId: a2Id, id: pipeline.id })).pipeline;
    assert.equal(stored?.jsonConfig, guideConfig, "the config is unchanged");
    assert.ok(!(await names(a2Id)).includes("op-process"), "nothing was stored");

    // Viewers: no configs (argv, env), but run state through PipelineRunsService.
    const viewerToken = await token("viewer");
    const viewer = tls(PipelinesService, { token: viewerToken });
    await assert.rejects(viewer.getPipelines({ nodeId: a2Id }), (e) => codeOf(e) === Code.PermissionDenied);
    const viewerRuns = tls(PipelineRunsService, { token: viewerToken });
    const { pipelines } = await viewerRuns.listPipelines({ nodeId: a2Id });
    assert.ok(pipelines.some((p) => p.name === "op-guide"));
    await bridge.deletePipeline({ nodeId: a2Id, id: pipeline.id });
  });

  it("an admin's process block runs only a program on the node's allow-list", {
    timeout: 60_000,
  }, async () => {
    const a2Id = a2.agent.identity.nodeId;
    const admin = tls(PipelinesService, await adminCredentials());
    const before = await names(a2Id);
    await assert.rejects(
      admin.createPipeline({
        nodeId: a2Id,
        name: "not-allowed",
        jsonConfig: processConfig(["/bin/cat", join(cluster.dataDir, "ca", "ca.key")]),
      }),
      denied(/"\/bin\/cat" is not on this node's --pipeline-allow list \(allowed: \/bin\/sh\)/),
    );
    // A bare name would be looked up in a PATH the pipeline sets: only absolute paths match.
    await assert.rejects(
      admin.createPipeline({ nodeId: a2Id, name: "bare", jsonConfig: processConfig(["sh", "-c", "true"]) }),
      denied(/"sh" is not on this node's --pipeline-allow list/),
    );
    const preload = JSON.stringify({
      version: 13,
      plumr_config: {
        pipeline: {
          "process-1": { process: { argv: ["/bin/sh", "-c", "true"], env: { LD_PRELOAD: "/tmp/x.so" } } },
        },
      },
    });
    await assert.rejects(
      admin.createPipeline({ nodeId: a2Id, name: "preload", jsonConfig: preload }),
      denied(/env\.LD_PRELOAD: may not be set/),
    );
    // a1 allows no programs at all.
    await assert.rejects(
      admin.createPipeline({
        nodeId: a1.agent.identity.nodeId,
        name: "a1-process",
        jsonConfig: processConfig(["/bin/sh", "-c", "true"]),
      }),
      denied(/this node runs no process blocks \(its --pipeline-allow list is empty\)/),
    );
    assert.deepEqual(await names(a2Id), before, "nothing was stored");

    // On the list: stored, started, and it runs to success.
    const { pipeline } = await admin.createPipeline({
      nodeId: a2Id,
      name: "allowed",
      jsonConfig: processConfig(["/bin/sh", "-c", "exit 0"]),
    });
    assert.ok(pipeline);
    const { runId } = await admin.startPipeline({
      nodeId: a2Id,
      pipelineIdentifier: { case: "id", value: pipeline.id },
    });
    const runs = plaintextClient(PipelineRunsService, cluster.bridgePort);
    await eventually(
      async () =>
        (await runs.getRun({ nodeId: a2Id, runId })).run?.state === PipelineRunState.SUCCEEDED
          ? true
          : undefined,
      30_000,
      "the allowed run to succeed",
    );
  });

  it("the controller's own node runs no process blocks unless its config names programs", {
    timeout: 60_000,
  }, async () => {
    await assert.rejects(
      bridge.createPipeline({
        nodeId: controllerNodeId(),
        name: "on-controller",
        jsonConfig: processConfig(["/bin/sh", "-c", "true"]),
      }),
      denied(/this node runs no process blocks \(its pipelines.processAllow list is empty\)/),
    );
    assert.deepEqual(await names(controllerNodeId()), []);
  });
});

describe("the allow-list is checked when a node starts", () => {
  it("refuses a program that is not an absolute, normalized path", async () => {
    const invalid = (field: string) => (error: unknown) => {
      assert.equal((error as { code?: string }).code, "INVALID_ARGUMENT", String(error));
      assert.match((error as Error).message, new RegExp(`^${field}: "bin/sh" must be an absolute`));
      return true;
    };
    const dataDir = await mkdtemp(join(tmpdir(), "corral-pipeline-allow-"));
    try {
      await assert.rejects(
        startTestController({ pipelines: { processAllow: ["bin/sh"] } }, {}, dataDir, false),
        invalid("pipelines.processAllow"),
      );
      await assert.rejects(
        startTestAgent({ dataDir, pipelineProcessAllow: ["bin/sh"] }),
        invalid("--pipeline-allow"),
      );
    } finally {
      await rm(dataDir, { recursive: true, force: true });
    }
  });
});

describe("a stored process pipeline the node does not allow never runs", () => {
  let dataDir: string;
  let cluster: TestController | undefined;
  before(async () => {
    dataDir = await mkdtemp(join(tmpdir(), "corral-pipeline-access-"));
  });
  after(async () => {
    await cluster?.close();
    await rm(dataDir, { recursive: true, force: true });
  });

  it("is left stopped at start and refused when started (a config from before the rule)", {
    timeout: 60_000,
  }, async () => {
    const marker = join(dataDir, "ran");
    // What a controller of an older version stored: a process pipeline that starts with the node.
    await mkdir(join(dataDir, "pipelines"), { recursive: true, mode: 0o700 });
    await writeFile(
      join(dataDir, "pipelines", "pipelines.json"),
      JSON.stringify([
        {
          id: "old-process",
          name: "old-process",
          jsonConfig: processConfig(["/bin/sh", "-c", `touch ${marker}`]),
          compatible: true,
          restartPolicy: { kind: "never", maxRestarts: 0 },
          startup: "auto",
          defaultLoggingLevel: 0,
          instructionsTimeout: 30,
          performanceMode: true,
          started: true,
        },
      ]),
      { mode: 0o600 },
    );
    cluster = await startTestController({}, {}, dataDir, false);
    const nodeId = cluster.controller.context.facts.controllerNodeId;
    const runs = plaintextClient(PipelineRunsService, cluster.bridgePort);
    const [summary] = (await runs.listPipelines({ nodeId })).pipelines;
    assert.equal(summary?.name, "old-process");
    assert.equal(summary?.run, undefined, "no run was started");
    const pipelines = plaintextClient(PipelinesService, cluster.bridgePort);
    await assert.rejects(
      pipelines.startPipeline({ nodeId, pipelineIdentifier: { case: "name", value: "old-process" } }),
      denied(/this node runs no process blocks/),
    );
    assert.equal((await runs.listPipelines({ nodeId })).pipelines[0]?.run, undefined);
    await assert.rejects(stat(marker), (e) => (e as NodeJS.ErrnoException).code === "ENOENT");
  });
});
