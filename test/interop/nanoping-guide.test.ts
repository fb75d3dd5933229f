import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { mkdir, mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { fileURLToPath } from "node:url";
import { JoinRequestState, JoinService } from "../../src/gen/corral/v1/join_pb.ts";
import { NodeStatus, NodesService } from "../../src/gen/corral/v1/nodes_pb.ts";
import { HubClientService } from "../../src/gen/hub_client_pb.ts";
import { eventually } from "../helpers/agent.ts";
import { plaintextClient } from "../helpers/clients.ts";
import {
  type AgentProcess,
  type ControllerProcess,
  CorralProcesses,
  startAgentProcess,
  startControllerProcess,
} from "../helpers/corral-processes.ts";

/**
 * NanoPing's integration guide, run by test/interop/nanoping_guide.py: a Python client generated at run
 * time from proto/nanoping/*.proto (what NanoPing's own generated clients put on the wire) against a real
 * `corral controller` and a real `corral up` agent, each its own process.
 */

const python = "/usr/bin/python3";
const script = fileURLToPath(new URL("./nanoping_guide.py", import.meta.url));
/** The script bounds each call itself (--timeout, --auth-timeout); this only stops a hung interpreter. */
const scriptLimitMs = 90_000;

interface RunResult {
  readonly exitCode: number | null;
  readonly stdout: string;
  readonly stderr: string;
  readonly error: string | undefined;
}

function run(file: string, args: readonly string[], timeout = scriptLimitMs): Promise<RunResult> {
  return new Promise((resolve) => {
    execFile(file, args, { timeout, killSignal: "SIGKILL" }, (error, stdout, stderr) => {
      const exitCode = error === null ? 0 : typeof error.code === "number" ? error.code : null;
      resolve({ exitCode, stdout, stderr, error: error?.message });
    });
  });
}

const probe = await run(python, ["-c", "import grpc, grpc_tools.protoc, google.protobuf"], 20_000);
const skip =
  probe.exitCode === 0
    ? false
    : `${python} cannot import grpc_tools (apt-get install python3-grpc-tools; python3-grpcio and python3-protobuf too): ${probe.stderr.trim().split("\n").at(-1) || probe.error}`;

type MetadataValue = [string | null, string | number | boolean | null];
interface GuideNode {
  id: string;
  name: string;
  online: boolean;
  services: string[];
  metadata: Record<string, MetadataValue>;
}
interface GuideSummary {
  mode: string;
  ok: boolean;
  failures: string[];
  node_id?: string;
  states?: string[];
  set_node?: GuideNode;
  authenticate?: { code: string; details: string; elapsed_s: number };
  already?: { code: string; details: string };
  authenticated_before?: boolean;
  authenticated_after?: boolean;
  requests?: { request_id: string; node: GuideNode }[];
  answers_sent?: number;
  /** The first batch of each LOGGING node's own log (LoggingService/openLogStream), by node name. */
  logs?: Record<string, { level: string; message: string; data: string }[] | { code: string }>;
  nodes: {
    all?: GuideNode[];
    metadata_type?: GuideNode[];
    metadata_type_as_bytes?: GuideNode[];
    logging?: GuideNode[];
    resources?: GuideNode[];
    pipelines?: GuideNode[] | { code: string; details: string };
  };
}

async function guide(
  agent: AgentProcess,
  controller: ControllerProcess,
  mode: "accept" | "reject" | "no-answer",
): Promise<RunResult & { summary: GuideSummary }> {
  const result = await run(python, [
    script,
    "--client",
    agent.localApi,
    "--controller",
    controller.bridge,
    "--hub-http",
    `http://${controller.cluster}`,
    "--mode",
    mode,
    "--timeout",
    "20",
    "--auth-timeout",
    "45",
  ]);
  const last = result.stdout.trimEnd().split("\n").at(-1) ?? "";
  let summary: GuideSummary;
  try {
    summary = JSON.parse(last) as GuideSummary;
  } catch {
    assert.fail(`no JSON summary (${result.error ?? "exit 0"}):\n${result.stdout}\n${result.stderr}`);
  }
  return { ...result, summary };
}

function explain(result: RunResult, ...processes: { process: { stderr: () => string } }[]): string {
  return [
    `exit ${result.exitCode} ${result.error ?? ""}`,
    `stdout:\n${result.stdout}`,
    `stderr:\n${result.stderr}`,
    ...processes.map((p) => `corral stderr:\n${p.process.stderr().slice(-3000)}`),
  ].join("\n");
}

const names = (nodes: GuideNode[] | undefined) => (nodes ?? []).map((n) => n.name);

describe("NanoPing's integration guide, from Python, against real corral processes", { skip }, () => {
  const processes = new CorralProcesses();
  let root: string;
  let hub: ControllerProcess;
  let client: AgentProcess;
  let clientDir: string;
  /** What the accept run found; the restart test builds on it. */
  let accepted: GuideSummary | undefined;

  before(async () => {
    root = await mkdtemp(join(tmpdir(), "corral-nanoping-guide-"));
    await mkdir(join(root, "hub"));
    // Short liveness, so that the stopped agent is seen gone before it comes back.
    hub = await startControllerProcess(processes, join(root, "hub"), {
      authenticationTimeout: "60s",
      liveness: { minInterval: "300ms", downAfter: "1s" },
    });
    clientDir = join(root, "client");
    client = await startAgentProcess(processes, clientDir);
  });

  after(async () => {
    await processes.killAll();
    if (root !== undefined) await rm(root, { recursive: true, force: true });
  });

  it("accept: the guide's flow, from connection state to node filters", { timeout: 120_000 }, async () => {
    const result = await guide(client, hub, "accept");
    const { summary } = result;
    assert.equal(result.exitCode, 0, explain(result, hub, client));
    assert.deepEqual(summary.failures, []);
    accepted = summary;

    assert.equal(summary.node_id, client.nodeId);
    assert.equal(summary.authenticated_before, false);
    assert.equal(summary.authenticated_after, true);
    // The current state first, then every change up to CONNECTED.
    assert.equal(summary.states?.[0], "UNAUTHENTICATED");
    assert.equal(summary.states?.at(-1), "CONNECTED");

    assert.equal(summary.set_node?.id, client.nodeId);
    assert.equal(summary.set_node?.name, "My NanoPing Client");
    assert.deepEqual(summary.set_node?.metadata, {
      location: ["string_value", "Denmark, Aalborg"],
      random_zero_bytes: ["bytes_value", "00000000000000000000"],
      reference: ["string_value", "my-reference"],
      type: ["string_value", "my-type"],
    });

    assert.equal(summary.authenticate?.code, "OK");
    assert.equal(summary.requests?.length, 1);
    assert.equal(summary.requests?.[0]?.node.id, client.nodeId);
    assert.equal(summary.requests?.[0]?.node.name, "My NanoPing Client");
    assert.equal(summary.answers_sent, 1);
    // The Go guide compares err.Error() with "rpc error: code = AlreadyExists desc = Client is already authenticated".
    assert.deepEqual(summary.already, { code: "ALREADY_EXISTS", details: "Client is already authenticated" });

    assert.deepEqual(names(summary.nodes.all), ["My Controller", "My NanoPing Client"]);
    const me = summary.nodes.all?.find((n) => n.id === client.nodeId);
    assert.deepEqual(me?.metadata, summary.set_node?.metadata);
    assert.deepEqual(names(summary.nodes.metadata_type), ["My NanoPing Client"]);
    assert.deepEqual(names(summary.nodes.metadata_type_as_bytes), []);
    // Only served services are advertised: LOGGING on every node, RESOURCES (never decoded) on none.
    assert.deepEqual(names(summary.nodes.logging), ["My Controller", "My NanoPing Client"]);
    assert.deepEqual(summary.nodes.resources, []);
    // Each LOGGING node's own log, read through the hub; pino's fields arrive as `data`.
    for (const name of ["My Controller", "My NanoPing Client"]) {
      const log = summary.logs?.[name];
      assert.ok(
        Array.isArray(log) && log.some((m) => m.data.startsWith("{")),
        `${name}: ${JSON.stringify(log)}`,
      );
    }
    // PIPELINES comes with a later feature: printed by the script, not asserted here.

    assert.match(result.stdout, /^Connection state: UNAUTHENTICATED$/m);
    assert.match(result.stdout, /^Updated client \S+ with node information$/m);
    assert.match(result.stdout, /^Connection state: CONNECTED$/m);
    assert.match(result.stdout, /^All nodes:\n Node: My Controller\n Node: My NanoPing Client\n$/m);
    assert.match(result.stdout, /^Nodes with metadata type=my-type:\n Node: My NanoPing Client\n$/m);
  });

  it("agent restart reconnects from its data dir without a new join request", {
    timeout: 90_000,
  }, async () => {
    assert.ok(accepted !== undefined, "needs the accept run above");
    const nodes = plaintextClient(NodesService, hub.bridgePort);
    const joins = plaintextClient(JoinService, hub.bridgePort);
    const statusOf = async () =>
      (await nodes.listNodes({})).nodes.find((n) => n.id === client.nodeId)?.status ?? NodeStatus.UNSPECIFIED;

    const requestsBefore = (await joins.listJoinRequests({ includeDecided: true })).requests;
    assert.deepEqual(
      requestsBefore.map((r) => [r.nodeId, r.state]),
      [[client.nodeId, JoinRequestState.ACCEPTED]],
    );
    await eventually(
      async () => ((await statusOf()) === NodeStatus.READY ? true : undefined),
      15_000,
      "node ready",
    );

    const exit = await client.process.stop("SIGTERM", 10_000);
    assert.deepEqual(exit, { code: 0, signal: null }, client.process.stderr());
    // Gone for the controller (suspect, then down) before it comes back: the check below means something.
    await eventually(
      async () => ((await statusOf()) !== NodeStatus.READY ? true : undefined),
      15_000,
      "the stopped agent to leave READY",
    );

    client = await startAgentProcess(processes, clientDir);
    assert.equal(client.nodeId, accepted.node_id, "same identity from the data dir");
    await eventually(
      async () => ((await statusOf()) === NodeStatus.READY ? true : undefined),
      20_000,
      "the restarted agent to be READY again",
    );
    const local = await plaintextClient(HubClientService, client.localApiPort).getLocalNodeId({});
    assert.deepEqual([local.nodeId, local.isAuthenticated], [client.nodeId, true]);
    const listed = (await nodes.listNodes({})).nodes.find((n) => n.id === client.nodeId);
    assert.equal(listed?.name, "My NanoPing Client");

    const afterRestart = (await joins.listJoinRequests({ includeDecided: true })).requests;
    assert.deepEqual(
      afterRestart.map((r) => [String(r.id), r.nodeId, r.state]),
      requestsBefore.map((r) => [String(r.id), r.nodeId, r.state]),
      "no new join request",
    );
  });

  it("reject: the hub answers accept=false, authenticateByRequest fails UNAUTHENTICATED", {
    timeout: 120_000,
  }, async () => {
    const other = await startAgentProcess(processes, join(root, "rejected"));
    const result = await guide(other, hub, "reject");
    const { summary } = result;
    assert.equal(result.exitCode, 0, explain(result, hub, other));
    assert.equal(summary.authenticate?.code, "UNAUTHENTICATED");
    assert.equal(summary.requests?.[0]?.node.id, other.nodeId);
    assert.equal(summary.answers_sent, 1);
    assert.equal(summary.authenticated_after, false);
    assert.deepEqual(summary.states, ["UNAUTHENTICATED"]);
    const joins = plaintextClient(JoinService, hub.bridgePort);
    const decided = (await joins.listJoinRequests({ includeDecided: true })).requests.find(
      (r) => r.nodeId === other.nodeId,
    );
    assert.equal(decided?.state, JoinRequestState.REJECTED);
    const listed = (await plaintextClient(NodesService, hub.bridgePort).listNodes({})).nodes;
    assert.ok(!listed.some((n) => n.id === other.nodeId), "a rejected node is not a member");
    await other.process.stop("SIGTERM");
  });

  it("no answer: with the hub's timeout at 2s, authenticateByRequest fails DEADLINE_EXCEEDED", {
    timeout: 120_000,
  }, async () => {
    await mkdir(join(root, "hub-2s"));
    const shortHub = await startControllerProcess(processes, join(root, "hub-2s"), {
      authenticationTimeout: "2s",
    });
    const other = await startAgentProcess(processes, join(root, "unanswered"));
    const result = await guide(other, shortHub, "no-answer");
    const { summary } = result;
    assert.equal(result.exitCode, 0, explain(result, shortHub, other));
    assert.equal(summary.authenticate?.code, "DEADLINE_EXCEEDED");
    // The hub's timeout, not the client's (45 s): blocked about 2 s.
    const elapsed = summary.authenticate?.elapsed_s ?? 0;
    assert.ok(elapsed >= 1.5 && elapsed < 15, `blocked ${elapsed}s`);
    assert.equal(summary.requests?.length, 1, "the request reached the listening stream, unanswered");
    assert.equal(summary.answers_sent, 0);
    assert.equal(summary.authenticated_after, false);
    assert.deepEqual(summary.states, ["UNAUTHENTICATED"]);
    await other.process.stop("SIGTERM");
    await shortHub.process.stop("SIGTERM");
  });
});
