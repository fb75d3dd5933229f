import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { mkdtemp, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, afterEach, before, describe, it } from "node:test";
import { setTimeout as sleep } from "node:timers/promises";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { clone, type DescFile, type DescService, equals, fromBinary, toJson } from "@bufbuild/protobuf";
import { protoCamelCase } from "@bufbuild/protobuf/reflect";
import {
  type DescriptorProto,
  type FileDescriptorProto,
  FileDescriptorProtoSchema,
  FileDescriptorSetSchema,
} from "@bufbuild/protobuf/wkt";
import { Code, ConnectError } from "@connectrpc/connect";
import { ServerReflection as ServerReflectionV1 } from "../../src/gen/grpc/reflection/v1/reflection_pb.ts";
import { HubServerService } from "../../src/gen/hub_server_pb.ts";
import { servedFileDescriptor } from "../../src/rpc/reflection/descriptor-index.ts";
import { createReflectionServices } from "../../src/rpc/reflection/reflection-service.ts";
import { type AllServicesServer, apiServices, startAllServicesServer } from "./all-services-server.ts";
import { decodeFiles, errorOf, ReflectionSession } from "./reflection-session.ts";

const repoRoot = fileURLToPath(new URL("../..", import.meta.url));
const NOT_FOUND = 5;

const expectedServices = [
  ...apiServices.map((s) => s.typeName),
  "grpc.reflection.v1.ServerReflection",
  "grpc.reflection.v1alpha.ServerReflection",
  "grpc.health.v1.Health",
];

/** The FileDescriptorSet `buf build` makes of proto/ (what protoc would produce), by file name. */
async function bufImage(): Promise<Map<string, FileDescriptorProto>> {
  const dir = await mkdtemp(join(tmpdir(), "corral-buf-"));
  try {
    const out = join(dir, "image.binpb");
    await promisify(execFile)(join(repoRoot, "node_modules/.bin/buf"), ["build", "-o", out], {
      cwd: repoRoot,
      timeout: 60_000,
    });
    const set = fromBinary(FileDescriptorSetSchema, await readFile(out));
    return new Map(set.file.map((file) => [file.name, file]));
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

function allDescriptorProtos(file: FileDescriptorProto): DescriptorProto[] {
  return [...qualifiedMessages(file).values()];
}

/** Every message of a file by its fully qualified name, map entries included. */
function qualifiedMessages(file: FileDescriptorProto): Map<string, DescriptorProto> {
  const out = new Map<string, DescriptorProto>();
  const visit = (scope: string, m: DescriptorProto) => {
    const name = scope === "" ? m.name : `${scope}.${m.name}`;
    out.set(name, m);
    for (const nested of m.nestedType) visit(name, nested);
  };
  for (const m of file.messageType) visit(file.package, m);
  return out;
}

/** Every file the mounted services need, as protobuf-es loaded them. */
function mountedFiles(): Map<string, DescFile> {
  const files = new Map<string, DescFile>();
  const add = (file: DescFile) => {
    if (files.has(file.proto.name)) return;
    files.set(file.proto.name, file);
    file.dependencies.forEach(add);
  };
  for (const service of apiServices) add(service.file);
  add(ServerReflectionV1.file);
  return files;
}

describe("server reflection", () => {
  let fixture: AllServicesServer;
  before(async () => {
    fixture = await startAllServicesServer();
  });
  after(() => fixture.close());
  afterEach(() => ReflectionSession.cancelAll());

  for (const version of ["v1", "v1alpha"] as const) {
    it(`${version}: lists every mounted service, reflection and health included`, async () => {
      const session = new ReflectionSession(version, fixture.port);
      const listed = await session.services();
      await session.end();
      assert.deepEqual([...listed].sort(), [...expectedServices].sort());
      assert.equal(new Set(listed).size, listed.length, "a service is listed twice");
    });

    it(`${version}: echoes the host and the original request`, async () => {
      const session = new ReflectionSession(version, fixture.port);
      const response = await session.ask({
        host: "localhost:1234",
        messageRequest: { case: "fileContainingSymbol", value: "corral.v1.NodesService" },
      });
      await session.end();
      assert.equal(response.validHost, "localhost:1234");
      assert.equal(response.originalRequest?.messageRequest.case, "fileContainingSymbol");
      assert.equal(response.originalRequest?.messageRequest.value, "corral.v1.NodesService");
    });
  }

  it("sends a file with all its transitive dependencies, each once, the file first", async () => {
    const session = new ReflectionSession("v1", fixture.port);
    const cases: Record<string, string[]> = {
      "hub_client.proto": ["hub_client.proto", "hub_node.proto"],
      "hub_server.proto": ["hub_server.proto", "hub_node.proto"],
      "pipelines.proto": [
        "pipelines.proto",
        "metrics.proto",
        "logging.proto",
        "google/protobuf/timestamp.proto",
      ],
      "corral/v1/nodes.proto": ["corral/v1/nodes.proto", "google/protobuf/timestamp.proto"],
      "node.proto": ["node.proto"],
      "google/protobuf/timestamp.proto": ["google/protobuf/timestamp.proto"],
    };
    for (const [name, expected] of Object.entries(cases)) {
      const files = await session.files({ case: "fileByFilename", value: name });
      const names = files.map((f) => f.name);
      assert.equal(names[0], name);
      assert.deepEqual([...names].sort(), [...expected].sort(), `files sent for ${name}`);
      // Every import of every file sent is itself in the answer.
      for (const file of files) for (const dep of file.dependency) assert.ok(names.includes(dep), dep);
    }
    await session.end();
  });

  it("finds the file of every service, method, message and enum, nested ones included", async () => {
    const session = new ReflectionSession("v1alpha", fixture.port);
    const files = mountedFiles();
    let asked = 0;
    for (const [name, file] of files) {
      const scoped = (local: string) =>
        file.proto.package === "" ? local : `${file.proto.package}.${local}`;
      const symbols = [
        ...file.services.flatMap((s) => [s.typeName, ...s.methods.map((m) => `${s.typeName}.${m.name}`)]),
        ...[...qualifiedMessages(file.proto)].flatMap(([typeName, m]) => [
          typeName,
          ...m.enumType.map((e) => `${typeName}.${e.name}`),
        ]),
        ...file.proto.enumType.map((e) => scoped(e.name)),
      ];
      for (const symbol of symbols) {
        const sent = await session.files({ case: "fileContainingSymbol", value: symbol });
        assert.equal(sent[0]?.name, name, `file of ${symbol}`);
        asked++;
      }
    }
    await session.end();
    assert.ok(asked > 200, `only ${asked} symbols checked`);
  });

  it("resolves the symbols grpcurl asks for by hand", async () => {
    const session = new ReflectionSession("v1", fixture.port);
    const cases: [string, string][] = [
      ["distributed_llm.NodeService.GetNodeInfo", "node.proto"],
      ["nanopinggrpc.hub.GetNodesRequest.MetadataFiltersEntry", "hub_server.proto"],
      ["grpc.health.v1.HealthCheckResponse.ServingStatus", "grpc/health/v1/health.proto"],
      ["grpc.health.v1.HealthCheckResponse.SERVING", "grpc/health/v1/health.proto"],
      ["nanopinggrpc.logging.Level", "logging.proto"],
      ["google.protobuf.Timestamp", "google/protobuf/timestamp.proto"],
      [".corral.v1.NodesService", "corral/v1/nodes.proto"],
      ["grpc.reflection.v1alpha.ServerReflection", "grpc/reflection/v1alpha/reflection.proto"],
    ];
    for (const [symbol, file] of cases) {
      const sent = await session.files({ case: "fileContainingSymbol", value: symbol });
      assert.equal(sent[0]?.name, file, symbol);
    }
    await session.end();
  });

  it("answers NOT_FOUND for unknown names and keeps the stream open", async () => {
    const session = new ReflectionSession("v1", fixture.port);
    const unknown = [
      { case: "fileContainingSymbol" as const, value: "no.such.Service" },
      { case: "fileContainingSymbol" as const, value: "" },
      { case: "fileByFilename" as const, value: "no_such.proto" },
      { case: "allExtensionNumbersOfType" as const, value: "no.such.Message" },
      {
        case: "fileContainingExtension" as const,
        value: { containingType: "corral.v1.Node", extensionNumber: 1000 },
      },
      {
        case: "fileContainingExtension" as const,
        value: { containingType: "no.such.Message", extensionNumber: 1 },
      },
    ];
    for (const messageRequest of unknown) {
      const error = errorOf(await session.ask({ messageRequest }));
      assert.equal(error.code, NOT_FOUND, JSON.stringify(messageRequest));
      assert.match(error.message, /not found/);
      // Still usable after the error.
      const names = await session.services();
      assert.ok(names.includes("grpc.health.v1.Health"));
    }
    await session.end();
  });

  it("reports no extension numbers for a known message type", async () => {
    const session = new ReflectionSession("v1alpha", fixture.port);
    const response = await session.ask({
      messageRequest: { case: "allExtensionNumbersOfType", value: "distributed_llm.NodeInfoRequest" },
    });
    await session.end();
    assert.equal(response.messageResponse.case, "allExtensionNumbersResponse");
    assert.equal(response.messageResponse.value.baseTypeName, "distributed_llm.NodeInfoRequest");
    assert.deepEqual(response.messageResponse.value.extensionNumber, []);
  });

  it("serves each file exactly as buf builds it (ignoring source info), in both versions", async () => {
    const image = await bufImage();
    const v1 = new ReflectionSession("v1", fixture.port);
    const v1alpha = new ReflectionSession("v1alpha", fixture.port);
    const served = new Set<string>();
    for (const [name, expected] of image) {
      const fromV1 = await v1.ask({ messageRequest: { case: "fileByFilename", value: name } });
      const fromV1alpha = await v1alpha.ask({ messageRequest: { case: "fileByFilename", value: name } });
      assert.equal(fromV1.messageResponse.case, "fileDescriptorResponse", `${name} not served`);
      assert.equal(fromV1alpha.messageResponse.case, "fileDescriptorResponse", `${name} not served`);
      assert.deepEqual(
        fromV1alpha.messageResponse.value.fileDescriptorProto,
        fromV1.messageResponse.value.fileDescriptorProto,
        `${name}: v1 and v1alpha differ`,
      );
      const actual = decodeFiles(fromV1)[0];
      assert.ok(actual !== undefined);
      // Nothing the served descriptor carries is unknown to descriptor.proto.
      assert.equal(actual.$unknown, undefined, `${name}: unknown fields`);
      assert.equal(actual.sourceCodeInfo, undefined);
      const want = { ...expected, sourceCodeInfo: undefined };
      assert.deepEqual(
        toJson(FileDescriptorProtoSchema, actual),
        toJson(FileDescriptorProtoSchema, want),
        `${name} differs from buf's`,
      );
      assert.ok(equals(FileDescriptorProtoSchema, actual, want), `${name} differs from buf's`);
      served.add(name);
    }
    await v1.end();
    await v1alpha.end();
    // buf builds every file of proto/ and each one is reachable by name.
    for (const name of ["hub_node.proto", "metrics.proto", "google/protobuf/timestamp.proto"]) {
      assert.ok(served.has(name), name);
    }
    assert.ok(served.size >= 15, `${served.size} files compared`);
  });

  it("sends map entries, imports, json names and proto3 optionals the way protoc writes them", async () => {
    const session = new ReflectionSession("v1", fixture.port);
    const byName = async (name: string) => {
      const files = await session.files({ case: "fileByFilename", value: name });
      const file = files[0];
      assert.ok(file !== undefined && file.name === name);
      return file;
    };
    const hubServer = await byName("hub_server.proto");
    const request = hubServer.messageType.find((m) => m.name === "GetNodesRequest");
    const entry = request?.nestedType.find((m) => m.name === "MetadataFiltersEntry");
    assert.ok(entry !== undefined, "GetNodesRequest.MetadataFiltersEntry missing");
    assert.equal(entry.options?.mapEntry, true);
    const filters = request?.field.find((f) => f.name === "metadata_filters");
    assert.equal(filters?.typeName, ".nanopinggrpc.hub.GetNodesRequest.MetadataFiltersEntry");
    assert.equal(filters?.jsonName, "metadataFilters");

    assert.deepEqual((await byName("hub_client.proto")).dependency, ["hub_node.proto"]);
    assert.deepEqual((await byName("pipelines.proto")).dependency, [
      "metrics.proto",
      "logging.proto",
      "google/protobuf/timestamp.proto",
    ]);

    let proto3Optionals = 0;
    let mapEntries = 0;
    for (const file of mountedFiles().keys()) {
      const proto = await byName(file);
      for (const message of allDescriptorProtos(proto)) {
        for (const field of message.field) {
          assert.equal(field.jsonName, protoCamelCase(field.name), `${message.name}.${field.name} json_name`);
          if (field.proto3Optional) {
            proto3Optionals++;
            // protoc puts a proto3 optional field alone in a synthetic oneof named _<field>.
            const oneof = message.oneofDecl[field.oneofIndex];
            assert.equal(oneof?.name, `_${field.name}`);
          }
        }
        for (const nested of message.nestedType) {
          if (nested.options?.mapEntry !== true) continue;
          const field = message.field.find((f) => f.typeName.endsWith(`.${message.name}.${nested.name}`));
          assert.ok(field !== undefined, `map entry ${nested.name} has no field`);
          assert.equal(
            nested.name,
            `${protoCamelCase(field.name).replace(/^./, (c) => c.toUpperCase())}Entry`,
          );
          mapEntries++;
        }
      }
    }
    await session.end();
    // picontroller.proto's `optional double temperature_celsius` at least; maps in several files.
    assert.ok(proto3Optionals > 0, "no proto3 optional field was checked");
    assert.ok(mapEntries > 3, `only ${mapEntries} map entries checked`);
  });

  it("puts back imports and json names if the loaded descriptor lacks them", () => {
    const original = HubServerService.file;
    const stripped = clone(FileDescriptorProtoSchema, original.proto);
    stripped.dependency = [];
    for (const message of allDescriptorProtos(stripped))
      for (const field of message.field) field.jsonName = "";
    const repaired = servedFileDescriptor({ ...original, proto: stripped });
    assert.ok(equals(FileDescriptorProtoSchema, repaired, original.proto));
    assert.deepEqual(repaired.dependency, ["hub_node.proto"]);
    // The stripped input is left alone; an intact descriptor is served as it is.
    assert.deepEqual(stripped.dependency, []);
    assert.equal(servedFileDescriptor(original), original.proto);
  });

  it("follows the services mounted after it", () => {
    const first = apiServices[0] as DescService;
    const mounted: DescService[] = [first];
    const reflection = createReflectionServices(() => mounted);
    const list = () => {
      const answer = reflection.answer({ host: "", messageRequest: { case: "listServices", value: "" } });
      assert.equal(answer.case, "listServicesResponse");
      return answer.value.service.map((s) => s.name);
    };
    const hubNode = () =>
      reflection.answer({ host: "", messageRequest: { case: "fileByFilename", value: "hub_node.proto" } })
        .case;
    assert.deepEqual(list(), [first.typeName]);
    assert.equal(hubNode(), "errorResponse");
    mounted.push(HubServerService);
    assert.deepEqual(list(), [first.typeName, "nanopinggrpc.hub.HubServerService"]);
    assert.equal(hubNode(), "fileDescriptorResponse");
  });

  it("ends the stream at the deadline while it waits for the next request", async () => {
    const before = fixture.reflection.activeStreams;
    const session = new ReflectionSession("v1", fixture.port, 300);
    await session.services();
    assert.equal(fixture.reflection.activeStreams, before + 1);
    await assert.rejects(session.next(), (error: unknown) => {
      assert.ok(error instanceof ConnectError, String(error));
      assert.equal(error.code, Code.DeadlineExceeded);
      return true;
    });
    for (let i = 0; i < 100 && fixture.reflection.activeStreams > before; i++) await sleep(20);
    assert.equal(fixture.reflection.activeStreams, before, "the handler outlived the deadline");
    session.cancel();
  });

  it("stops the handler when the client cancels", async () => {
    const before = fixture.reflection.activeStreams;
    const session = new ReflectionSession("v1alpha", fixture.port);
    await session.services();
    assert.equal(fixture.reflection.activeStreams, before + 1);
    session.cancel();
    for (let i = 0; i < 100 && fixture.reflection.activeStreams > before; i++) await sleep(20);
    assert.equal(fixture.reflection.activeStreams, before, "the handler outlived the cancelled call");
  });
});
