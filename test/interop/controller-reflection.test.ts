import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { after, before, describe, it } from "node:test";
import { fileURLToPath } from "node:url";
import { startTestController, type TestController } from "../helpers/controller.ts";

const python = "/usr/bin/python3";
const script = fileURLToPath(new URL("./reflection_client.py", import.meta.url));

function run(args: readonly string[]): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(
      python,
      [script, ...args],
      { timeout: 90_000, killSignal: "SIGKILL" },
      (error, stdout, stderr) => {
        resolve({
          code: error === null ? 0 : typeof error.code === "number" ? error.code : null,
          stdout,
          stderr,
        });
      },
    );
  });
}

const canRun = await new Promise<boolean>((resolve) =>
  execFile(python, ["-c", "import grpc, google.protobuf"], { timeout: 20_000 }, (error) =>
    resolve(error === null),
  ),
);

const everyService = [
  "corral.v1.NodesService",
  "corral.v1.ClusterService",
  "nanopinggrpc.hub.HubClientService",
  "nanopinggrpc.hub.HubServerService",
  "nanopinggrpc.pipeline.PipelinesService",
  "nanopinggrpc.logging.LoggingService",
  "distributed_llm.NodeService",
  "distributed_llm.DiscoveryService",
  "distributed_llm.TUIService",
  "messages.ControlPlane",
  "picontroller.NodeAgent",
  "picontroller.ControlPlane",
  "grpc.health.v1.Health",
  "grpc.reflection.v1.ServerReflection",
  "grpc.reflection.v1alpha.ServerReflection",
];

describe("the real controller, seen from Python's C-core client through reflection alone", {
  skip: canRun ? false : `${python} cannot import grpc (install python3-grpcio and python3-protobuf)`,
}, () => {
  let cluster: TestController;
  before(async () => {
    cluster = await startTestController({ node: { name: "My Controller" } });
  });
  after(() => cluster.close());

  for (const flavour of ["v1", "v1alpha"]) {
    it(`lists all five packages and gets GetNodeInfo's codes right (reflection ${flavour}, gzip)`, async () => {
      const result = await run([
        `127.0.0.1:${cluster.bridgePort}`,
        ...everyService,
        "--reflection",
        flavour,
        "--expect-code-empty",
        "INVALID_ARGUMENT",
        "--expect-code-unknown",
        "NOT_FOUND",
        "--node-id",
        "My Controller",
      ]);
      assert.equal(result.code, 0, `python client failed:\n${result.stderr}\n${result.stdout}`);
      const summary = JSON.parse(result.stdout) as {
        ok: boolean;
        pool_built: boolean;
        services: string[];
        missing_services: string[];
        GetNodeInfo: Record<
          string,
          { code: string; response?: { node?: { node_id?: string; status?: string } } }
        >;
      };
      assert.equal(summary.ok, true);
      assert.equal(summary.pool_built, true);
      assert.deepEqual(summary.missing_services, []);
      for (const service of everyService) assert.ok(summary.services.includes(service), `${service} listed`);
      const found = Object.values(summary.GetNodeInfo).find((call) => call.code === "OK");
      // Asked by name; node_id is the node's lasting id.
      assert.equal(found?.response?.node?.node_id, cluster.controller.context.facts.controllerNodeId);
      assert.equal(found?.response?.node?.status, "ready");
    });
  }
});
