import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { mkdir, mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { fileURLToPath } from "node:url";
import {
  type AgentProcess,
  type ControllerProcess,
  CorralProcesses,
  startAgentProcess,
  startControllerProcess,
} from "../helpers/corral-processes.ts";

/**
 * The PIPELINES part of NanoPing's guide (test/interop/nanoping_pipelines.py, stubs generated from our
 * copy of NanoPing's protos) against a real controller and a real agent: CRUD on every node offering
 * PIPELINES, reached through the controller, and through the agent's local API (which manages only its
 * own node's pipelines).
 */
const python = "/usr/bin/python3";
const guideScript = fileURLToPath(new URL("./nanoping_guide.py", import.meta.url));
const script = fileURLToPath(new URL("./nanoping_pipelines.py", import.meta.url));

function run(args: readonly string[], timeout = 90_000) {
  return new Promise<{ code: number | null; stdout: string; stderr: string }>((resolve) => {
    execFile(python, args, { timeout, killSignal: "SIGKILL" }, (error, stdout, stderr) => {
      resolve({
        code: error === null ? 0 : typeof error.code === "number" ? error.code : null,
        stdout,
        stderr,
      });
    });
  });
}

const probe = await run(["-c", "import grpc, grpc_tools.protoc, google.protobuf"], 20_000);
const skip =
  probe.code === 0 ? false : `python3 cannot import grpc_tools: ${probe.stderr.trim().split("\n").at(-1)}`;

interface NodeRecord {
  node: string;
  headers_received: boolean;
  /** Set when the node's pipelines were refused to this caller (the gRPC code's name). */
  refused?: string;
  events: [string, string][];
  steps: Record<string, Record<string, unknown> | string>;
}

describe("NanoPing's guide, PIPELINES part, from Python", { skip }, () => {
  const processes = new CorralProcesses();
  let root: string;
  let hub: ControllerProcess;
  let client: AgentProcess;

  before(async () => {
    root = await mkdtemp(join(tmpdir(), "corral-nanoping-pipelines-"));
    await mkdir(join(root, "hub"));
    hub = await startControllerProcess(processes, join(root, "hub"), { authenticationTimeout: "60s" });
    client = await startAgentProcess(processes, join(root, "client"));
    // Join the agent the guide's way (accept mode).
    const joined = await run([
      guideScript,
      "--client",
      client.localApi,
      "--controller",
      hub.bridge,
      "--hub-http",
      `http://${hub.cluster}`,
      "--mode",
      "accept",
      "--timeout",
      "20",
      "--auth-timeout",
      "45",
    ]);
    assert.equal(joined.code, 0, joined.stdout + joined.stderr);
  });

  after(async () => {
    await processes.killAll();
    if (root !== undefined) await rm(root, { recursive: true, force: true });
  });

  for (const via of ["agent local API", "controller bridge"] as const) {
    it(`CRUD on the controller's node and the agent's node, via the ${via}`, {
      timeout: 120_000,
    }, async () => {
      const api = via === "agent local API" ? client.localApi : hub.bridge;
      const result = await run([script, "--api", api, "--timeout", "20"]);
      const explain = `${result.stdout}\n${result.stderr}\n${hub.process.stderr().slice(-2000)}\n${client.process.stderr().slice(-2000)}`;
      assert.equal(result.code, 0, explain);
      const summary = JSON.parse(result.stdout.trimEnd().split("\n").at(-1) ?? "{}") as {
        failures: string[];
        pipeline_nodes: string[];
        nodes: NodeRecord[];
      };
      assert.deepEqual(summary.failures, [], explain);
      assert.deepEqual([...summary.pipeline_nodes].sort(), ["My Controller", "My NanoPing Client"]);
      assert.equal(summary.nodes.length, 2);
      // An agent's local API manages its own node's pipelines; another node's (here the controller's)
      // are refused, as the call reaches the controller under the agent's node certificate.
      assert.deepEqual(
        summary.nodes.filter((node) => node.refused !== undefined).map((node) => [node.node, node.refused]),
        via === "agent local API" ? [["My Controller", "PERMISSION_DENIED"]] : [],
        explain,
      );
      for (const node of summary.nodes.filter((n) => n.refused === undefined)) {
        assert.equal(node.headers_received, true, node.node);
        assert.deepEqual(
          node.steps.create,
          {
            has_pipeline: true,
            id: (node.steps.create as { id: string }).id,
            name: "My First Pipeline",
            json_config_same: true,
            restart_policy: "on_failure",
            max_restarts: 3,
            startup_policy: "manual",
            default_logging_level: "DEBUG",
            instructions_timeout: 15,
            performance_mode: true,
            started: false,
            config_compatability: "COMPATIBLE",
          },
          node.node,
        );
        assert.equal((node.steps.update as { name: string }).name, "My Updated Pipeline");
        assert.equal((node.steps.get as { name: string }).name, "My Updated Pipeline");
        assert.equal(node.steps.get_after_delete, "NOT_FOUND");
        assert.deepEqual(
          node.events,
          [
            ["create", "My First Pipeline"],
            ["update", "My Updated Pipeline"],
            ["delete", "My Updated Pipeline"],
          ],
          node.node,
        );
      }
      assert.match(
        result.stdout,
        /^Nodes with Pipelines service enabled:\n Node: My Controller\n Node: My NanoPing Client\n/m,
      );
    });
  }
});
