import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { after, before, describe, it } from "node:test";
import { fileURLToPath } from "node:url";
import { fromBinary, toBinary } from "@bufbuild/protobuf";
import { type FileDescriptorProto, FileDescriptorProtoSchema } from "@bufbuild/protobuf/wkt";
import { ServerCredentials } from "@grpc/grpc-js";
import { CorralError } from "../../src/base/errors.ts";
import { ServerReflection } from "../../src/gen/grpc/reflection/v1/reflection_pb.ts";
import { NodeService } from "../../src/gen/node_pb.ts";
import {
  createReflectionServices,
  mountReflection,
  type ReflectionAnswer,
  untilAborted,
} from "../../src/rpc/reflection/reflection-service.ts";
import { RpcServer } from "../../src/rpc/rpc-server.ts";
import { type AllServicesServer, apiServices, startAllServicesServer } from "../rpc/all-services-server.ts";

const python = "/usr/bin/python3";
const script = fileURLToPath(new URL("./reflection_client.py", import.meta.url));
/** Generous: the script itself bounds every call with --timeout. */
const runLimitMs = 60_000;

interface RunResult {
  readonly exitCode: number | null;
  readonly stdout: string;
  readonly stderr: string;
  /** Why the process failed (not found, killed at the time limit, non-zero exit). */
  readonly error: string | undefined;
}

function run(file: string, args: readonly string[], timeout = runLimitMs): Promise<RunResult> {
  return new Promise((resolve) => {
    execFile(file, args, { timeout, killSignal: "SIGKILL" }, (error, stdout, stderr) => {
      const exitCode = error === null ? 0 : typeof error.code === "number" ? error.code : null;
      resolve({ exitCode, stdout, stderr, error: error?.message });
    });
  });
}

const probe = await run(python, ["-c", "import grpc, google.protobuf"], 20_000);
const skip =
  probe.exitCode === 0
    ? false
    : `${python} cannot import grpc and google.protobuf (install python3-grpcio and python3-protobuf): ${probe.stderr.trim() || probe.error}`;

interface Summary {
  ok: boolean;
  pool_built: boolean;
  failures: string[];
  services: string[];
  missing_services: string[];
  files: string[];
  message_types: number;
  methods: Record<string, string[]>;
  unknown_symbol?: { code: string; message: string };
  GetNodeInfo?: Record<string, { code: string; details?: string; response?: unknown }>;
}

async function reflect(port: number, args: readonly string[]): Promise<RunResult & { summary: Summary }> {
  const result = await run(python, [script, `127.0.0.1:${port}`, ...args, "--timeout", "15"]);
  let summary: Summary;
  try {
    summary = JSON.parse(result.stdout) as Summary;
  } catch {
    assert.fail(`no JSON summary (${result.error ?? "exit 0"}):\n${result.stdout}\n${result.stderr}`);
  }
  return { ...result, summary };
}

const apiNames = apiServices.map((s) => s.typeName);

describe("a Python client that learns the schema only by reflection", { skip }, () => {
  let fixture: AllServicesServer;
  before(async () => {
    fixture = await startAllServicesServer();
  });
  after(() => fixture.close());

  for (const version of ["v1", "v1alpha"]) {
    it(`${version}: lists every service of the five APIs and builds a descriptor pool from them`, async () => {
      const { exitCode, stderr, summary } = await reflect(fixture.port, [
        ...apiNames,
        "grpc.health.v1.Health",
        "--reflection",
        version,
        "--expect-code-empty",
        "UNIMPLEMENTED",
        "--expect-code-unknown",
        "UNIMPLEMENTED",
      ]);
      assert.equal(exitCode, 0, `${stderr}\n${JSON.stringify(summary.failures)}`);
      assert.equal(summary.ok, true);
      assert.equal(summary.pool_built, true);
      assert.deepEqual(summary.missing_services, []);
      for (const name of [...apiNames, "grpc.health.v1.Health"]) {
        assert.ok(summary.services.includes(name), `${name} not listed`);
        assert.ok((summary.methods[name]?.length ?? 0) > 0, `${name} has no methods in the pool`);
      }
      for (const file of [
        "hub_node.proto",
        "metrics.proto",
        "logging.proto",
        "google/protobuf/timestamp.proto",
      ]) {
        assert.ok(summary.files.includes(file), `${file} not loaded`);
      }
      assert.ok(summary.message_types > 100, `${summary.message_types} message types`);
      assert.equal(summary.unknown_symbol?.code, "NOT_FOUND");
      // The empty implementations answer UNIMPLEMENTED; the details show the gzipped request reached
      // the adapter (a server refusing the encoding would say so instead).
      for (const call of ["empty", "unknown"]) {
        assert.equal(summary.GetNodeInfo?.[call]?.code, "UNIMPLEMENTED");
        assert.match(summary.GetNodeInfo?.[call]?.details ?? "", /GetNodeInfo is not implemented/);
      }
    });
  }

  it("fails, exit 1, when a status is not the one expected", async () => {
    const { exitCode, summary } = await reflect(fixture.port, [
      "distributed_llm.NodeService",
      "--expect-code-empty",
      "INVALID_ARGUMENT",
      "--expect-code-unknown",
      "NOT_FOUND",
    ]);
    assert.equal(exitCode, 1);
    assert.equal(summary.ok, false);
    assert.equal(summary.pool_built, true);
    assert.equal(summary.failures.length, 2);
    assert.match(summary.failures[0] ?? "", /UNIMPLEMENTED .*expected INVALID_ARGUMENT/);
    assert.match(summary.failures[1] ?? "", /UNIMPLEMENTED .*expected NOT_FOUND/);
  });

  it("asserts the codes of a real implementation and decodes a found node", async () => {
    const server = new RpcServer();
    server.add(NodeService, {
      getNodeInfo(request) {
        if (request.nodeId === "") throw CorralError.invalidArgument("node_id", "required");
        if (request.nodeId !== "n1") throw CorralError.notFound("node", request.nodeId);
        return { success: true, node: { nodeId: "n1", port: 7000, lastSeen: 1_700_000_000_000n } };
      },
    });
    mountReflection(server);
    const port = await server.listen("127.0.0.1:0", ServerCredentials.createInsecure());
    try {
      const { exitCode, stderr, summary } = await reflect(port, [
        "distributed_llm.NodeService",
        "--expect-code-empty",
        "INVALID_ARGUMENT",
        "--expect-code-unknown",
        "NOT_FOUND",
        "--node-id",
        "n1",
      ]);
      assert.equal(exitCode, 0, stderr);
      assert.deepEqual(summary.GetNodeInfo?.existing, {
        code: "OK",
        // proto3 JSON as Python's json_format writes it: int64 as a string, defaults left out.
        response: { success: true, node: { node_id: "n1", port: 7000, last_seen: "1700000000000" } },
      });
      assert.match(summary.GetNodeInfo?.unknown?.details ?? "", /node "no-such-node" not found/);
    } finally {
      await server.close(1_000);
    }
  });

  it("fails when an expected service is not served", async () => {
    const { exitCode, summary } = await reflect(fixture.port, ["no.such.Service", "--skip-call"]);
    assert.equal(exitCode, 1);
    assert.deepEqual(summary.missing_services, ["no.such.Service"]);
  });

  // The defects seen with other reflection servers (shared/STACK.md): the Python pool must catch them,
  // or the passing runs above would prove nothing.
  const defects: [string, (file: FileDescriptorProto) => void, RegExp][] = [
    [
      "a file sent without its import list",
      (file) => {
        if (file.name === "hub_server.proto") file.dependency = [];
      },
      /rejected hub_server\.proto.*nanopinggrpc\.hub\.Node" (is not defined|seems to be defined in "hub_node\.proto", which is not imported)/s,
    ],
    [
      "a map entry named as proto-loader names it",
      (file) => {
        if (file.name !== "hub_server.proto") return;
        for (const message of file.messageType) {
          for (const nested of message.nestedType) {
            if (nested.name !== "MetadataFiltersEntry") continue;
            nested.name = "Metadata_filters";
            for (const field of message.field) {
              field.typeName = field.typeName.replace(/MetadataFiltersEntry$/, "Metadata_filters");
            }
          }
        }
      },
      /rejected hub_server\.proto.*map_entry/s,
    ],
    [
      "an import that is never sent",
      (file) => {
        if (file.name === "hub_node.proto") file.name = "elsewhere/hub_node.proto";
      },
      /imports never sent: hub_node\.proto/,
    ],
  ];
  for (const [defect, mutate, expected] of defects) {
    it(`fails loudly on ${defect}`, async () => {
      const server = new RpcServer();
      for (const service of apiServices) server.add(service, {});
      const reflection = createReflectionServices(() => server.services);
      server.add(ServerReflection, {
        async *serverReflectionInfo(requests, ctx) {
          for await (const request of untilAborted(requests, ctx.signal)) {
            yield { validHost: request.host, messageResponse: corrupt(reflection.answer(request), mutate) };
          }
        },
      });
      const port = await server.listen("127.0.0.1:0", ServerCredentials.createInsecure());
      try {
        const { exitCode, summary } = await reflect(port, [
          "nanopinggrpc.hub.HubServerService",
          "--skip-call",
        ]);
        assert.equal(exitCode, 1);
        assert.equal(summary.pool_built, false);
        assert.match(summary.failures.join("\n"), expected);
      } finally {
        await server.close(1_000);
      }
    });
  }
});

function corrupt(answer: ReflectionAnswer, mutate: (file: FileDescriptorProto) => void): ReflectionAnswer {
  if (answer.case !== "fileDescriptorResponse") return answer;
  const fileDescriptorProto = answer.value.fileDescriptorProto.map((bytes) => {
    const file = fromBinary(FileDescriptorProtoSchema, bytes);
    mutate(file);
    return toBinary(FileDescriptorProtoSchema, file);
  });
  return { case: "fileDescriptorResponse", value: { fileDescriptorProto } };
}
