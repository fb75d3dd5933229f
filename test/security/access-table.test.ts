import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { create, type DescService, fromBinary, toBinary } from "@bufbuild/protobuf";
import { FileDescriptorProtoSchema } from "@bufbuild/protobuf/wkt";
import { Client, credentials, Metadata, type StatusObject, status } from "@grpc/grpc-js";
import { grpcServices } from "../../src/controller/service-table.ts";
import { Health } from "../../src/gen/grpc/health/v1/health_pb.ts";
import {
  type ServerReflectionRequest,
  ServerReflectionRequestSchema,
  ServerReflectionResponseSchema,
  ServerReflection as ServerReflectionV1,
} from "../../src/gen/grpc/reflection/v1/reflection_pb.ts";
import { ServerReflection as ServerReflectionV1alpha } from "../../src/gen/grpc/reflection/v1alpha/reflection_pb.ts";
import { type AccessRule, accessTable } from "../../src/security/access-table.ts";
import { nodeIdentityUri, operatorIdentityUri, type Role } from "../../src/security/principal.ts";
import { startTestController, type TestController } from "../helpers/controller.ts";

/**
 * Walks the whole access table against a real controller: every method served on the cluster TLS
 * listener × every kind of caller, each a real call with an empty request. A call counts as refused by
 * the table only when it ends UNAUTHENTICATED or PERMISSION_DENIED *with* the trailer the authorization
 * step adds (`corral-denied-by: access-table`); anything else — OK, a handler's INVALID_ARGUMENT,
 * UNIMPLEMENTED, a handler's own PERMISSION_DENIED — got past the table.
 */

type Caller = "anonymous" | Role;
const callers: readonly Caller[] = ["anonymous", "viewer", "operator", "admin", "node"];
type MethodKind = "unary" | "server_streaming" | "client_streaming" | "bidi_streaming";

interface ServedMethod {
  readonly path: string;
  readonly kind: MethodKind;
}

interface Outcome {
  readonly code: status;
  readonly details: string;
  readonly deniedBy: string | undefined;
}

/** A channel plus how the audit log names the caller on it. */
interface Identity {
  readonly client: Client;
  readonly audited: string;
}

interface Walked {
  readonly method: ServedMethod;
  readonly caller: Caller;
  readonly identity: Identity;
  readonly outcome: Outcome;
}

const deniedByKey = "corral-denied-by";
const deniedByValue = "access-table";
const unaryDeadlineMs = 10_000;
/** Backstop only: a stream is cancelled as soon as its response headers arrive (the handler runs). */
const streamDeadlineMs = 5_000;
const parallelism = 8;
const raw = (bytes: Buffer): Buffer => bytes;
const empty = Buffer.alloc(0);

function kindOf(clientStreaming: boolean, serverStreaming: boolean): MethodKind {
  if (clientStreaming) return serverStreaming ? "bidi_streaming" : "client_streaming";
  return serverStreaming ? "server_streaming" : "unary";
}

function allows(rule: AccessRule | undefined, caller: Caller): boolean {
  if (rule === undefined) return false;
  if (rule.anonymous) return true;
  return caller !== "anonymous" && rule.roles.includes(caller);
}

/**
 * One call with an empty request (zero bytes). Unary and client streaming: wait for the status.
 * Streams: the authorization step runs before the handler, and response headers go out only once the
 * handler has started, so headers (or a first message) mean "let through" — the call is cancelled
 * then; a refusal is a trailers-only answer that carries the marker.
 */
function callOnce(client: Client, method: ServedMethod): Promise<Outcome> {
  return new Promise((resolve) => {
    const streaming = method.kind !== "unary";
    const options = { deadline: Date.now() + (streaming ? streamDeadlineMs : unaryDeadlineMs) };
    const finish = (result: StatusObject) => {
      const deniedBy = result.metadata?.get(deniedByKey)[0];
      resolve({
        code: result.code,
        details: result.details,
        deniedBy: deniedBy === undefined ? undefined : String(deniedBy),
      });
    };
    const ignore = () => undefined;
    switch (method.kind) {
      case "unary": {
        const call = client.makeUnaryRequest(method.path, raw, raw, empty, new Metadata(), options, ignore);
        call.on("status", finish);
        break;
      }
      case "client_streaming": {
        const call = client.makeClientStreamRequest(method.path, raw, raw, new Metadata(), options, ignore);
        call.on("status", finish);
        call.end();
        break;
      }
      case "server_streaming": {
        const call = client.makeServerStreamRequest(method.path, raw, raw, empty, new Metadata(), options);
        const cancel = () => call.cancel();
        call.on("metadata", cancel);
        call.on("data", cancel);
        call.on("error", ignore);
        call.on("status", finish);
        break;
      }
      case "bidi_streaming": {
        const call = client.makeBidiStreamRequest(method.path, raw, raw, new Metadata(), options);
        const cancel = () => call.cancel();
        call.on("metadata", cancel);
        call.on("data", cancel);
        call.on("error", ignore);
        call.on("status", finish);
        call.end();
        break;
      }
    }
  });
}

/** One ServerReflectionInfo (v1) stream: sends every request, ends the input, collects the answers. */
function reflect(client: Client, requests: ServerReflectionRequest[]) {
  return new Promise<ReturnType<typeof decodeReflection>[]>((resolve, reject) => {
    const answers: ReturnType<typeof decodeReflection>[] = [];
    const call = client.makeBidiStreamRequest(
      `/${ServerReflectionV1.typeName}/ServerReflectionInfo`,
      (request: ServerReflectionRequest) => Buffer.from(toBinary(ServerReflectionRequestSchema, request)),
      decodeReflection,
      new Metadata(),
      { deadline: Date.now() + 10_000 },
    );
    call.on("data", (answer: ReturnType<typeof decodeReflection>) => answers.push(answer));
    call.on("error", reject);
    call.on("status", (result: StatusObject) => {
      if (result.code === status.OK) resolve(answers);
    });
    for (const request of requests) call.write(request);
    call.end();
  });
}

function decodeReflection(bytes: Buffer) {
  return fromBinary(ServerReflectionResponseSchema, bytes);
}

/** Every method of every service the listener serves, as its own reflection describes them. */
async function servedMethods(client: Client): Promise<ServedMethod[]> {
  const [listing] = await reflect(client, [
    create(ServerReflectionRequestSchema, { messageRequest: { case: "listServices", value: "" } }),
  ]);
  assert.equal(listing?.messageResponse.case, "listServicesResponse");
  const names =
    listing.messageResponse.case === "listServicesResponse"
      ? listing.messageResponse.value.service.map((s) => s.name)
      : [];
  const answers = await reflect(
    client,
    names.map((name) =>
      create(ServerReflectionRequestSchema, {
        messageRequest: { case: "fileContainingSymbol", value: name },
      }),
    ),
  );
  assert.equal(answers.length, names.length, "one reflection answer per service");
  const methods: ServedMethod[] = [];
  names.forEach((name, i) => {
    const answer = answers[i]?.messageResponse;
    assert.equal(answer?.case, "fileDescriptorResponse", `reflection has no file for ${name}`);
    const files =
      answer?.case === "fileDescriptorResponse"
        ? answer.value.fileDescriptorProto.map((bytes) => fromBinary(FileDescriptorProtoSchema, bytes))
        : [];
    const service = files
      .flatMap((file) =>
        file.service.map((s) => ({ full: file.package ? `${file.package}.${s.name}` : s.name, s })),
      )
      .find((candidate) => candidate.full === name)?.s;
    assert.ok(service !== undefined, `reflection's files for ${name} do not declare it`);
    for (const m of service.method) {
      methods.push({ path: `/${name}/${m.name}`, kind: kindOf(m.clientStreaming, m.serverStreaming) });
    }
  });
  return methods;
}

/** Runs `work` over `items`, at most `limit` at a time, keeping the order of the results. */
async function pool<T, R>(items: readonly T[], limit: number, work: (item: T) => Promise<R>): Promise<R[]> {
  const results: R[] = new Array(items.length);
  let next = 0;
  const worker = async () => {
    while (next < items.length) {
      const i = next++;
      results[i] = await work(items[i] as T);
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
  return results;
}

const show = (outcome: Outcome) =>
  `${status[outcome.code]}${outcome.deniedBy === undefined ? "" : ` [denied-by ${outcome.deniedBy}]`} "${outcome.details}"`;

describe("the access table, walked against a real controller", () => {
  let cluster: TestController;
  let methods: ServedMethod[];
  const clients: Client[] = [];
  const shared = new Map<Caller, Identity>();
  let nodeSerial = 0;

  const channel = (key?: string, cert?: string): Client => {
    const ca = Buffer.from(cluster.controller.ca.certificatePem);
    const creds =
      key === undefined || cert === undefined
        ? credentials.createSsl(ca)
        : credentials.createSsl(ca, Buffer.from(key), Buffer.from(cert));
    // The controller's certificate names localhost too; an IP as TLS server name draws a warning.
    const client = new Client(`127.0.0.1:${cluster.clusterPort}`, creds, {
      "grpc.ssl_target_name_override": "localhost",
    });
    clients.push(client);
    return client;
  };

  const operatorIdentity = async (role: Exclude<Role, "node">): Promise<Identity> => {
    const name = `walker-${role}`;
    const issued = await cluster.controller.ca.issue({
      commonName: name,
      dnsNames: [],
      ipAddresses: [],
      uris: [operatorIdentityUri(role, name)],
      validityMs: 3_600_000,
      usage: "client",
    });
    return { client: channel(issued.privateKeyPem, issued.certificatePem), audited: `${role}:${name}` };
  };

  /** A registered node and a certificate for it: each call that may change a node gets its own. */
  const nodeIdentity = async (): Promise<Identity> => {
    const id = `walker-node-${++nodeSerial}`;
    await cluster.controller.context.registry.register({ id, name: id, status: "ready" });
    const issued = await cluster.controller.ca.issue({
      commonName: id,
      dnsNames: [],
      ipAddresses: [],
      uris: [nodeIdentityUri(id)],
      validityMs: 3_600_000,
      usage: "client",
    });
    return { client: channel(issued.privateKeyPem, issued.certificatePem), audited: `node:${id}` };
  };

  before(async () => {
    cluster = await startTestController({ node: { name: "Walked Controller" } });
    shared.set("anonymous", { client: channel(), audited: "anonymous" });
    for (const role of ["viewer", "operator", "admin"] as const)
      shared.set(role, await operatorIdentity(role));
    shared.set("node", await nodeIdentity());
    methods = await servedMethods(shared.get("anonymous")?.client as Client);
  });

  after(async () => {
    for (const client of clients) client.close();
    await cluster?.close();
  });

  let walking: Promise<{ walked: Walked[]; ms: number }> | undefined;
  /** The walk, done once and shared by the tests below. */
  const walk = () => {
    walking ??= (async () => {
      const jobs: { method: ServedMethod; caller: Caller; identity: Identity }[] = [];
      for (const method of methods) {
        const rule = accessTable[method.path];
        for (const caller of callers) {
          // A node allowed a state-changing call (Leave, say) might end its own membership: it makes
          // that call with an identity of its own, so the shared node stays valid for the rest.
          const own = caller === "node" && rule?.mutates === true && allows(rule, "node");
          const identity = own ? await nodeIdentity() : (shared.get(caller) as Identity);
          jobs.push({ method, caller, identity });
        }
      }
      const started = performance.now();
      const outcomes = await pool(jobs, parallelism, (job) => callOnce(job.identity.client, job.method));
      const ms = performance.now() - started;
      return { walked: jobs.map((job, i) => ({ ...job, outcome: outcomes[i] as Outcome })), ms };
    })();
    return walking;
  };

  it("has an entry for every served method, and none for a method that is not served", () => {
    const served = new Set(methods.map((m) => m.path));
    const missing = [...served].filter((path) => accessTable[path] === undefined).sort();
    const stale = Object.keys(accessTable)
      .filter((path) => !served.has(path))
      .sort();
    assert.deepEqual(
      { missing, stale },
      { missing: [], stale: [] },
      `served methods without an entry (refused to everyone): ${missing.join(", ") || "none"}; ` +
        `entries naming no served method: ${stale.join(", ") || "none"}`,
    );
  });

  it("sees through reflection exactly the services the controller mounts", () => {
    const mounted: DescService[] = [
      ...grpcServices(cluster.controller.context).map((entry) => entry.service),
      ServerReflectionV1,
      ServerReflectionV1alpha,
      Health,
    ];
    const expected = mounted
      .flatMap((service) =>
        service.methods.map(
          (m) =>
            `${`/${service.typeName}/${m.name}`} ${kindOf(
              m.methodKind === "client_streaming" || m.methodKind === "bidi_streaming",
              m.methodKind === "server_streaming" || m.methodKind === "bidi_streaming",
            )}`,
        ),
      )
      .sort();
    assert.deepEqual(methods.map((m) => `${m.path} ${m.kind}`).sort(), expected);
  });

  it("lets every caller through exactly where the table allows, and refuses with the marker elsewhere", async (t) => {
    const { walked, ms } = await walk();
    const mismatches: string[] = [];
    const wrongCode: string[] = [];
    const lostIdentity: string[] = [];
    const codes = new Map<string, number>();
    for (const { method, caller, outcome } of walked) {
      const refused =
        (outcome.code === status.UNAUTHENTICATED || outcome.code === status.PERMISSION_DENIED) &&
        outcome.deniedBy === deniedByValue;
      const allowed = allows(accessTable[method.path], caller);
      const label = `${method.path} as ${caller}`;
      codes.set(status[outcome.code], (codes.get(status[outcome.code]) ?? 0) + 1);
      if (allowed === refused) {
        mismatches.push(
          `${label}: table ${allowed ? "allows" : "refuses"}, but the call was ${refused ? "refused" : "let through"}: ${show(outcome)}`,
        );
      }
      if (refused) {
        const expected = caller === "anonymous" ? status.UNAUTHENTICATED : status.PERMISSION_DENIED;
        if (outcome.code !== expected)
          wrongCode.push(`${label}: ${show(outcome)}, expected ${status[expected]}`);
      }
      // A certificate that stopped being accepted makes every answer after it meaningless.
      if (caller !== "anonymous" && outcome.code === status.UNAUTHENTICATED && !refused) {
        lostIdentity.push(`${label}: ${show(outcome)}`);
      }
    }
    t.diagnostic(
      `${walked.length} calls (${methods.length} methods × ${callers.length} callers) in ${Math.round(ms)} ms; ` +
        [...codes].map(([code, n]) => `${code} ${n}`).join(", "),
    );
    assert.equal(walked.length, methods.length * callers.length);
    assert.deepEqual(lostIdentity, [], `identities not accepted:\n${lostIdentity.join("\n")}`);
    assert.deepEqual(mismatches, [], `${mismatches.length} mismatch(es):\n${mismatches.join("\n")}`);
    assert.deepEqual(wrongCode, [], `refusals with the wrong status:\n${wrongCode.join("\n")}`);
  });

  it("writes an audit entry for every allowed call of a method that changes state", async () => {
    const { walked } = await walk();
    const expected = walked
      .filter(
        ({ method, caller }) =>
          accessTable[method.path]?.mutates === true && allows(accessTable[method.path], caller),
      )
      .map(({ method, identity }) => `${identity.audited} ${method.path}`);
    assert.ok(expected.length > 0);
    // Entries are appended when a call ends, without holding up the answer: give them a moment.
    let missing: string[] = expected;
    for (const until = Date.now() + 5_000; ; ) {
      const recorded = new Set(
        (await cluster.controller.context.audit.recent(100_000)).map((e) => `${e.principal} ${e.method}`),
      );
      missing = expected.filter((entry) => !recorded.has(entry));
      if (missing.length === 0 || Date.now() > until) break;
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
    assert.deepEqual(missing, [], `allowed mutating calls with no audit entry:\n${missing.join("\n")}`);
  });
});
