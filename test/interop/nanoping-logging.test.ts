import assert from "node:assert/strict";
import { mkdir, mkdtemp, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { timestampMs } from "@bufbuild/protobuf/wkt";
import { Code, ConnectError, createClient, type Interceptor } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import { Role, TokensService } from "../../src/gen/corral/v1/tokens_pb.ts";
import { HubClientService } from "../../src/gen/hub_client_pb.ts";
import { NodeService } from "../../src/gen/hub_node_pb.ts";
import { HubServerService } from "../../src/gen/hub_server_pb.ts";
import { Level, LoggingService, type Message } from "../../src/gen/logging_pb.ts";
import { PipelinesService } from "../../src/gen/pipelines_pb.ts";
import { eventually } from "../helpers/agent.ts";
import { plaintextClient } from "../helpers/clients.ts";
import {
  type AgentProcess,
  type ControllerProcess,
  CorralProcesses,
  startAgentProcess,
  startControllerProcess,
} from "../helpers/corral-processes.ts";
import { guideConfig } from "../pipelines/fixtures.ts";

/**
 * Issue #19, items 2 and 3, on real processes (a controller and two `corral up` agents joined by
 * token): an agent's local API answers getNode for another node exactly as getNodes does, and every
 * node that advertises LOGGING serves NanoPing's LoggingService — its own log and its pipeline runs'
 * logs, routed by node_id through the controller, levels and options honoured.
 */
const everything = 9_223_372_036_854_775_807n;

const plain = (m: Message) => ({
  at: m.timestamp === undefined ? 0 : timestampMs(m.timestamp),
  level: m.level,
  message: m.message,
  data: m.data,
});

async function codeOf(call: () => Promise<unknown>): Promise<Code | undefined> {
  try {
    await call();
    return undefined;
  } catch (error) {
    return ConnectError.from(error).code;
  }
}

/** Reads a LoggingService stream to its end (a finished run's log ends by itself). */
async function readAll(stream: AsyncIterable<{ messages: Message[] }>): Promise<Message[]> {
  const out: Message[] = [];
  for await (const batch of stream) out.push(...batch.messages);
  return out;
}

describe("NanoPing node data and LoggingService on a controller and two agents", () => {
  const processes = new CorralProcesses();
  let root: string;
  let hub: ControllerProcess;
  let agent1: AgentProcess;
  let agent2: AgentProcess;
  let controllerId: string;

  before(async () => {
    root = await mkdtemp(join(tmpdir(), "corral-nanoping-logging-"));
    await mkdir(join(root, "hub"));
    hub = await startControllerProcess(processes, join(root, "hub"));
    const { token } = await plaintextClient(TokensService, hub.bridgePort).createToken({
      role: Role.NODE,
      uses: 2,
    });
    const join_ = (name: string) => ["--name", name, "--join", hub.cluster, "--token", token];
    agent1 = await startAgentProcess(processes, join(root, "agent-1"), join_("agent-1"));
    agent2 = await startAgentProcess(processes, join(root, "agent-2"), join_("agent-2"));
    const hubServer = plaintextClient(HubServerService, hub.bridgePort);
    controllerId = await eventually(
      async () => {
        const { nodes } = await hubServer.getNodes({});
        return nodes.length === 3 && nodes.every((n) => n.online)
          ? nodes.find((n) => n.name === "My Controller")?.id
          : undefined;
      },
      30_000,
      "the controller and both agents online",
    );
  });

  after(async () => {
    await processes.killAll();
    if (root !== undefined) await rm(root, { recursive: true, force: true });
  });

  it("an agent's local API answers getNode for any node exactly as getNodes does", async () => {
    await plaintextClient(HubClientService, agent2.localApiPort).setNode({
      nodeId: agent2.nodeId,
      name: "agent-2",
      metadata: { items: { site: { value: { case: "stringValue", value: "Aalborg" } } } },
    });
    const viaAgent1 = plaintextClient(HubClientService, agent1.localApiPort);
    const listed = await eventually(
      async () => {
        const { nodes } = await plaintextClient(HubServerService, agent1.localApiPort).getNodes({});
        const other = nodes.find((n) => n.id === agent2.nodeId);
        return other?.metadata?.items.site !== undefined ? nodes : undefined;
      },
      15_000,
      "agent-2's metadata in getNodes",
    );
    assert.equal(listed.length, 3);
    for (const node of listed) {
      const { node: asked } = await viaAgent1.getNode({ nodeId: node.id });
      assert.deepEqual(asked, node, `getNode(${node.name}) on agent-1's local API`);
    }
    const other = listed.find((n) => n.id === agent2.nodeId);
    assert.deepEqual(other?.services, [NodeService.LOGGING, NodeService.PIPELINES]);
    assert.deepEqual(other?.metadata?.items.site?.value, { case: "stringValue", value: "Aalborg" });
    const controller = listed.find((n) => n.id === controllerId);
    assert.deepEqual(controller?.services, [
      NodeService.HUB_SERVER,
      NodeService.LOGGING,
      NodeService.PIPELINES,
    ]);
  });

  it("every node picked by service_filters [LOGGING] serves its own log through LoggingService", async () => {
    // A NanoPing client picks its nodes on its own node's API, then calls each through the hub.
    const { nodes } = await plaintextClient(HubServerService, agent1.localApiPort).getNodes({
      serviceFilters: [NodeService.LOGGING],
    });
    assert.deepEqual(nodes.map((n) => n.name).sort(), ["My Controller", "agent-1", "agent-2"]);
    // Only what is served is advertised: NanoPing's resources API is not, so no node offers it.
    const { nodes: withResources } = await plaintextClient(HubServerService, hub.bridgePort).getNodes({
      serviceFilters: [NodeService.RESOURCES],
    });
    assert.deepEqual(withResources, []);

    const logging = plaintextClient(LoggingService, hub.bridgePort);
    for (const node of nodes) {
      const stop = new AbortController();
      const stream = logging.openLogStream(
        {
          nodeId: node.id,
          options: { optionalLines: { case: "lines", value: everything } },
          request: { case: "appLogStreamRequest", value: {} },
        },
        { signal: stop.signal },
      );
      let first: Message[] = [];
      for await (const batch of stream) {
        first = batch.messages;
        break;
      }
      stop.abort();
      const started = first.find((m) => /^(agent|controller) started$/.test(m.message));
      assert.ok(started, `${node.name}: ${JSON.stringify(first.map((m) => m.message))}`);
      assert.equal(started.level, Level.INFO);
      // The line's structured fields (pino JSON) arrive as `data`.
      const data = JSON.parse(started.data) as Record<string, string>;
      if (node.id === controllerId) assert.ok(data.clusterId, started.data);
      else assert.equal(data.nodeId, node.id, `${node.name}'s log came from ${data.nodeId}`);
    }

    // options.lines is honoured: 1 sends the newest line only.
    const stop = new AbortController();
    for await (const batch of logging.openLogStream(
      {
        nodeId: agent2.nodeId,
        options: { optionalLines: { case: "lines", value: 1n } },
        request: { case: "appLogStreamRequest", value: {} },
      },
      { signal: stop.signal },
    )) {
      assert.equal(batch.messages.length, 1);
      break;
    }
    stop.abort();
  });

  it("serves a pipeline run's log at the pipeline's level, on the owning node, and as a file", async () => {
    const pipelines = plaintextClient(PipelinesService, hub.bridgePort);
    const logging = plaintextClient(LoggingService, hub.bridgePort);
    const runOn = async (level: Level, name: string) => {
      const { pipeline } = await pipelines.createPipeline({
        nodeId: agent1.nodeId,
        name,
        jsonConfig: guideConfig,
        restartPolicy: { restartPolicy: { case: "never", value: {} } },
        optionalDefaultLoggingLevel: { case: "defaultLoggingLevel", value: level },
      });
      const id = pipeline?.id ?? "";
      const { runId } = await pipelines.startPipeline({
        nodeId: agent1.nodeId,
        pipelineIdentifier: { case: "id", value: id },
      });
      await pipelines.stopPipeline({ nodeId: agent1.nodeId, pipelineIdentifier: { case: "id", value: id } });
      return runId;
    };
    const request = (runId: string, lines: bigint) => ({
      nodeId: agent1.nodeId,
      options: { optionalLines: { case: "lines" as const, value: lines } },
      request: { case: "pipelineRunLogStreamRequest" as const, value: { pipelineRunId: runId } },
    });

    const debugRun = await runOn(Level.DEBUG, "logging-debug");
    // The run is over, so its log ends and so does the stream.
    const all = await readAll(logging.openLogStream(request(debugRun, everything)));
    assert.ok(all.length > 0);
    assert.ok(
      all.some((m) => m.level === Level.INFO && /^run (stopped|succeeded)/.test(m.message)),
      JSON.stringify(all.map(plain)),
    );
    // The same lines as PipelinesService/openLogStream for the same run.
    const viaPipelines: Message[] = [];
    for await (const batch of pipelines.openLogStream({
      nodeId: agent1.nodeId,
      runId: debugRun,
      options: { optionalLines: { case: "lines", value: everything } },
    }))
      viaPipelines.push(...batch.messages);
    assert.deepEqual(all.map(plain), viaPipelines.map(plain));
    const last = await readAll(logging.openLogStream(request(debugRun, 1n)));
    assert.deepEqual(last.map(plain), all.slice(-1).map(plain));

    // default_logging_level ERROR: the INFO line that ends a run is not sent.
    const errorRun = await runOn(Level.ERROR, "logging-error");
    const errors = await readAll(logging.openLogStream(request(errorRun, everything)));
    assert.ok(
      errors.every((m) => m.level >= Level.ERROR),
      JSON.stringify(errors.map(plain)),
    );

    // downloadLogFile: the same log as text.
    const chunks: Uint8Array[] = [];
    for await (const chunk of logging.downloadLogFile({
      nodeId: agent1.nodeId,
      request: { case: "pipelineRunLogFileRequest", value: { pipelineRunId: debugRun } },
    })) {
      if (chunk.response.case === "fileChunk") chunks.push(chunk.response.value.content);
    }
    const text = Buffer.concat(chunks).toString("utf8");
    assert.equal(text.trimEnd().split("\n").length, all.length, text);
    assert.match(text, / INFO run (stopped|succeeded)/);
  });

  it("refuses what it cannot serve with the right code", async () => {
    const logging = plaintextClient(LoggingService, hub.bridgePort);
    const open = (client: typeof logging, request: Parameters<typeof logging.openLogStream>[0]) => () =>
      readAll(client.openLogStream(request));
    assert.equal(
      await codeOf(
        open(logging, {
          nodeId: agent1.nodeId,
          request: { case: "networkLogStreamRequest", value: { networkId: "n" } },
        }),
      ),
      Code.Unimplemented,
    );
    assert.equal(
      await codeOf(
        open(logging, {
          nodeId: agent1.nodeId,
          request: { case: "pipelineRunLogStreamRequest", value: { pipelineRunId: "no-such-run" } },
        }),
      ),
      Code.NotFound,
    );
    assert.equal(
      await codeOf(
        open(logging, { nodeId: "no-such-node", request: { case: "appLogStreamRequest", value: {} } }),
      ),
      Code.NotFound,
    );
    assert.equal(await codeOf(open(logging, { nodeId: agent1.nodeId })), Code.InvalidArgument);
    // A node reads only its own log, as with NodeAgent StreamLogs: agent-1's API asking for agent-2's
    // is passed to the controller under agent-1's certificate and refused there.
    const viaAgent1 = plaintextClient(LoggingService, agent1.localApiPort);
    assert.equal(
      await codeOf(
        open(viaAgent1, { nodeId: agent2.nodeId, request: { case: "appLogStreamRequest", value: {} } }),
      ),
      Code.PermissionDenied,
    );
  });

  it("a viewer's log stream ends at its next batch once the viewer's token is revoked", async () => {
    const tokens = plaintextClient(TokensService, hub.bridgePort);
    const viewer = await tokens.createToken({ role: Role.VIEWER, description: "log reader" });
    const ca = await readFile(join(root, "hub", "data", "admin", "ca.crt"), "utf8");
    const bearer: Interceptor = (next) => (request) => {
      request.header.set("authorization", `Bearer ${viewer.token}`);
      return next(request);
    };
    const asViewer = createClient(
      LoggingService,
      createGrpcTransport({ baseUrl: `https://${hub.cluster}`, nodeOptions: { ca }, interceptors: [bearer] }),
    );
    // A run that keeps going until it is stopped (the guide's blocks, many slow packets).
    const config = JSON.parse(guideConfig) as {
      plumr_config: { pipeline: Record<string, Record<string, Record<string, unknown>>> };
    };
    const source = config.plumr_config.pipeline["uniform_traffic_source-1"]?.uniform_traffic_source;
    if (source !== undefined) Object.assign(source, { total_packets: 1_000_000_000, interval: 1000 });
    const pipelines = plaintextClient(PipelinesService, hub.bridgePort);
    const { pipeline } = await pipelines.createPipeline({
      nodeId: agent1.nodeId,
      name: "logging-revoked-reader",
      jsonConfig: JSON.stringify(config),
      restartPolicy: { restartPolicy: { case: "never", value: {} } },
      optionalDefaultLoggingLevel: { case: "defaultLoggingLevel", value: Level.DEBUG },
    });
    const which = { case: "id" as const, value: pipeline?.id ?? "" };
    const { runId } = await pipelines.startPipeline({ nodeId: agent1.nodeId, pipelineIdentifier: which });
    const stream = asViewer
      .openLogStream({
        nodeId: agent1.nodeId,
        options: { optionalLines: { case: "lines", value: everything } },
        request: { case: "pipelineRunLogStreamRequest", value: { pipelineRunId: runId } },
      })
      [Symbol.asyncIterator]();
    // The viewer reads until the run has said it started: the stream is open and authorized.
    for (let i = 0; i < 100; i++) {
      const next = await stream.next();
      assert.equal(next.done, false, "the run's log ended before it started");
      if (next.value?.messages.some((m) => m.message.startsWith("run started"))) break;
    }
    await tokens.revokeToken({ id: viewer.info?.id ?? "" });
    // Stopping the run writes its last lines and ends its log: the revoked reader gets none of them.
    await pipelines.stopPipeline({ nodeId: agent1.nodeId, pipelineIdentifier: which });
    await assert.rejects(
      async () => {
        for (let i = 0; i < 100; i++) if ((await stream.next()).done) return;
      },
      (error: unknown) => ConnectError.from(error).code === Code.Unauthenticated,
    );
  });
});
