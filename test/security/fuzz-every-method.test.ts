import assert from "node:assert/strict";
import { mkdir, mkdtemp, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { create, type DescMethod, type DescService, fromBinary, toBinary } from "@bufbuild/protobuf";
import { credentials } from "@grpc/grpc-js";
import fc from "fast-check";
import { NodesService } from "../../src/gen/corral/v1/nodes_pb.ts";
import { Role, TokensService } from "../../src/gen/corral/v1/tokens_pb.ts";
import {
  HealthCheckRequestSchema,
  HealthCheckResponse_ServingStatus,
  HealthCheckResponseSchema,
} from "../../src/gen/grpc/health/v1/health_pb.ts";
import { accessTable } from "../../src/security/access-table.ts";
import { eventually } from "../helpers/agent.ts";
import { plaintextClient } from "../helpers/clients.ts";
import {
  type AgentProcess,
  type ControllerProcess,
  CorralProcesses,
  startAgentProcess,
  startControllerProcess,
} from "../helpers/corral-processes.ts";
import { generatedServices, requestBody } from "./fuzz-requests.ts";
import { type Caller, connectCaller, grpcCaller, listServices, type Outcome } from "./fuzz-targets.ts";
import { changedKeys, StoreSnapshots } from "./store-snapshot.ts";

/**
 * The fuzzer of issue #17: random requests — Unicode, control characters, unpaired surrogates, huge
 * strings, random bytes that are no message at all — to every unary method of every face, on every
 * listener: the controller's loopback bridge (admin), its TLS cluster listener (anonymous, and with a
 * viewer token), an agent's local API, the web listener (Connect protocol), and an agent's mTLS
 * listener called with the certificate of a node that was removed. The controller and
 * the agent are child processes, so "still serving" is literal: the same pids answer health checks
 * afterwards. And no refused call changed the store: its SQLite file is read around every call.
 *
 * Bounded: about 2 500 cases (a sweep of every method, then 2 000 random ones); CORRAL_FUZZ_RUNS=50000
 * runs that many random cases instead.
 */

const totalRuns = Number(process.env.CORRAL_FUZZ_RUNS ?? 2_000);
/** Share of the random cases per target: the bridge (admin) reaches the most code. */
const shares = {
  "tls-anonymous": 0.15,
  "tls-viewer": 0.15,
  web: 0.15,
  "local-api": 0.2,
  "agent-removed-node": 0.1,
  bridge: 0.25,
};
type TargetName = keyof typeof shares;

/**
 * Calls that succeed by design and would cut the agent off from the test, or make it dial an address
 * the fuzzer chose: a node leaving its hub on request is the API's purpose, not a finding.
 */
const excluded: Partial<Record<TargetName, ReadonlySet<string>>> = {
  "local-api": new Set([
    "/nanopinggrpc.hub.HubClientService/disconnect",
    "/nanopinggrpc.hub.HubClientService/authenticateByRequest",
  ]),
  // Refused to a node's certificate before any handler runs; left out all the same, because a step
  // that got through would run (as root, on CI) whatever the fuzzer made up.
  "agent-removed-node": new Set(["/corral.v1.ProvisioningAgentService/RunSteps"]),
};

interface Target {
  readonly name: TargetName;
  readonly call: Caller;
  readonly methods: readonly DescMethod[];
  /** Whether a call that succeeded may have changed the store (a viewer's never may). */
  readonly mayChange: (path: string) => boolean;
  /** Who asks for health afterwards, where the target's own caller may not (a removed node). */
  readonly healthCall?: Caller;
}

const pathOf = (method: DescMethod) => `/${method.parent.typeName}/${method.name}`;

describe("every unary method of every face, fuzzed", { timeout: 600_000 }, () => {
  const processes = new CorralProcesses();
  const closers: (() => void)[] = [];
  let root: string;
  let controller: ControllerProcess;
  let agent: AgentProcess;
  let webUrl: string;
  let snapshots: StoreSnapshots;
  const targets: Target[] = [];

  before(async () => {
    root = await mkdtemp(join(tmpdir(), "corral-fuzz-"));
    await mkdir(join(root, "controller"));
    controller = await startControllerProcess(processes, join(root, "controller"), {
      authenticationTimeout: "1s",
    });
    webUrl = /\n\s+web\s+(\S+)\n/.exec(controller.process.stdout())?.[1] ?? "";
    assert.match(webUrl, /^http:\/\/127\.0\.0\.1:\d+$/);
    const dataDir = join(root, "controller", "data");
    const tokens = plaintextClient(TokensService, controller.bridgePort);
    const { token: nodeToken } = await tokens.createToken({
      role: Role.NODE,
      description: "fuzz agents",
      uses: 2,
    });
    const { token: viewer } = await tokens.createToken({ role: Role.VIEWER, description: "fuzz viewer" });
    agent = await startAgentProcess(processes, join(root, "agent"), [
      "--name",
      "Fuzz-Büro-9",
      "--join",
      controller.cluster,
      "--token",
      nodeToken,
    ]);
    const local = grpcCaller(agent.localApi, credentials.createInsecure());
    closers.push(() => local.client.close());
    await eventually(
      async () => ((await health(local.call)) === "SERVING" ? true : undefined),
      30_000,
      "the agent's local API serving",
    );
    // A second node joins and is removed again: its certificate calls the first agent's listener.
    const leaver = await startAgentProcess(processes, join(root, "leaver"), [
      "--name",
      "fuzz-leaver",
      "--join",
      controller.cluster,
      "--token",
      nodeToken,
    ]);
    const removed = await eventually(
      async () => ({
        key: await readFile(join(root, "leaver", "node.key")),
        cert: await readFile(join(root, "leaver", "node.crt")),
      }),
      15_000,
      "the second node's credentials on disk",
    );
    await leaver.process.stop();
    await plaintextClient(NodesService, controller.bridgePort).removeNode({ node: "fuzz-leaver" });
    const agentListener = /cluster listener\s+(\S+)/.exec(agent.process.stdout())?.[1] ?? "";
    snapshots = new StoreSnapshots(join(dataDir, "corral.db"));
    closers.push(() => snapshots.close());

    const ca = await readFile(join(dataDir, "admin", "ca.crt"));
    const generated = await generatedServices();
    const unaryOf = async (listing: Promise<string[]>): Promise<DescMethod[]> => {
      const methods: DescMethod[] = [];
      for (const name of await listing) {
        const service = generated.get(name) as DescService | undefined;
        assert.ok(service !== undefined, `the listener serves ${name}, which the generated code lacks`);
        methods.push(...service.methods.filter((m) => m.methodKind === "unary"));
      }
      return methods;
    };
    const bridge = grpcCaller(controller.bridge, credentials.createInsecure());
    const anonymous = grpcCaller(controller.cluster, credentials.createSsl(ca));
    const asViewer = grpcCaller(controller.cluster, credentials.createSsl(ca), { bearer: viewer });
    const asRemoved = grpcCaller(agentListener, credentials.createSsl(ca, removed.key, removed.cert));
    for (const { client } of [bridge, anonymous, asViewer, asRemoved]) closers.push(() => client.close());

    const bridgeMethods = await unaryOf(listServices(bridge.client));
    const clusterMethods = await unaryOf(listServices(anonymous.client));
    const localMethods = await unaryOf(listServices(local.client));
    // The removed node may not even list the agent's services (its reflection refuses it too): the
    // controller's admin lists them, once the agent has the cluster's picture of who may call it.
    const asAdmin = grpcCaller(
      agentListener,
      credentials.createSsl(
        ca,
        await readFile(join(dataDir, "admin", "client.key")),
        await readFile(join(dataDir, "admin", "client.crt")),
      ),
    );
    closers.push(() => asAdmin.client.close());
    const agentListenerMethods = await unaryOf(
      eventually(() => listServices(asAdmin.client).catch(() => undefined), 15_000, "the agent's services"),
    );
    // The web listener has no reflection: a method it does not route answers 404 (unimplemented).
    const web = connectCaller(webUrl, { bearer: viewer });
    const webMethods: DescMethod[] = [];
    for (const method of bridgeMethods) {
      const outcome = await web(pathOf(method), Buffer.alloc(0));
      if (outcome.code !== "UNIMPLEMENTED" && outcome.code !== "HTTP_404") webMethods.push(method);
    }
    assert.ok(webMethods.some((m) => pathOf(m) === "/corral.v1.NodesService/ListNodes"));

    const anonymousMayChange = (path: string) =>
      accessTable[path]?.anonymous === true && accessTable[path]?.mutates === true;
    const keep = (name: TargetName, methods: DescMethod[]) =>
      methods.filter((m) => !excluded[name]?.has(pathOf(m)));
    targets.push(
      { name: "tls-anonymous", call: anonymous.call, methods: clusterMethods, mayChange: anonymousMayChange },
      { name: "tls-viewer", call: asViewer.call, methods: clusterMethods, mayChange: () => false },
      {
        name: "web",
        // Half the web cases as the viewer, half without any credential.
        call: alternate(web, connectCaller(webUrl)),
        methods: webMethods,
        mayChange: anonymousMayChange,
      },
      {
        name: "local-api",
        call: local.call,
        methods: keep("local-api", localMethods),
        mayChange: () => true,
      },
      {
        name: "agent-removed-node",
        call: asRemoved.call,
        methods: keep("agent-removed-node", agentListenerMethods),
        mayChange: () => false,
        healthCall: asAdmin.call,
      },
      { name: "bridge", call: bridge.call, methods: bridgeMethods, mayChange: () => true },
    );
  });

  after(async () => {
    for (const close of closers) close();
    await processes.killAll();
    if (root !== undefined) await rm(root, { recursive: true, force: true });
  });

  it("keeps the same controller and agent serving, and no refused call changes the store", async (t) => {
    const pids = { controller: controller.process.child.pid, agent: agent.process.child.pid };
    const histogram = new Map<TargetName, Map<string, number>>();
    const internal: string[] = [];
    let cases = 0;

    /** One case: the call, then the checks that must hold after every single call. */
    const attempt = async (target: Target, method: DescMethod, body: Buffer, kind: string) => {
      const path = pathOf(method);
      const before = snapshots.take();
      const outcome: Outcome = await target.call(path, body);
      const changed = changedKeys(before, snapshots.take());
      cases++;
      const counts = histogram.get(target.name) ?? new Map<string, number>();
      counts.set(outcome.code, (counts.get(outcome.code) ?? 0) + 1);
      histogram.set(target.name, counts);
      if (isServerFault(target, outcome))
        internal.push(`${target.name} ${path} (${kind}): ${outcome.code} ${outcome.message.slice(0, 200)}`);
      const where = `${target.name} ${path} with ${kind} of ${body.length} bytes`;
      assert.ok(
        !controller.process.exited,
        `the controller exited after ${where}:\n${controller.process.stderr().slice(-3000)}`,
      );
      assert.ok(
        !agent.process.exited,
        `the agent exited after ${where}:\n${agent.process.stderr().slice(-3000)}`,
      );
      if (changed.length > 0) {
        assert.ok(
          outcome.code === "OK" && target.mayChange(path),
          `${where} answered ${outcome.code} "${outcome.message.slice(0, 200)}" yet changed ${changed.slice(0, 5).join(", ")}`,
        );
      }
    };

    // 1. A sweep: every method once with every top-level text field set to non-ASCII text with a newline.
    for (const target of targets) {
      for (const method of target.methods) {
        const init: Record<string, unknown> = {};
        for (const field of method.input.fields)
          if (field.fieldKind === "scalar" && field.scalar === 9 && field.oneof === undefined)
            init[field.localName] = addressLike.has(field.name) ? "127.0.0.1:1" : "Büro-7\nx";
        await attempt(
          target,
          method,
          Buffer.from(toBinary(method.input, create(method.input, init))),
          "Büro-7\\n",
        );
      }
    }

    // 2. Random cases, per target: a method, then a body for its input type.
    for (const target of targets) {
      const runs = Math.max(1, Math.round(totalRuns * shares[target.name]));
      const cases = fc
        .constantFrom(...target.methods)
        .chain((method) => requestBody(method.input).map((request) => ({ method, request })));
      await fc.assert(
        fc.asyncProperty(cases, async ({ method, request }) => {
          await attempt(target, method, request.body, request.kind);
        }),
        { numRuns: runs, endOnFailure: true },
      );
    }

    // 3. The same processes still serve, on every listener.
    assert.equal(controller.process.child.pid, pids.controller);
    assert.equal(agent.process.child.pid, pids.agent);
    for (const target of targets.filter((t) => t.name !== "web"))
      assert.equal(
        await health(target.healthCall ?? target.call),
        "SERVING",
        `${target.name} health after the fuzz`,
      );
    const healthz = await fetch(`${webUrl}/healthz`);
    assert.equal(healthz.status, 200);

    const lines = [`fuzzer: ${cases} cases`];
    for (const [name, counts] of histogram) {
      const sorted = [...counts].sort((a, b) => b[1] - a[1]);
      lines.push(`  ${name.padEnd(18)} ${sorted.map(([code, n]) => `${code} ${n}`).join(", ")}`);
    }
    for (const line of lines) t.diagnostic(line);
    console.log(lines.join("\n"));
    // A fault of the server (INTERNAL / UNKNOWN) is a bug too, even when the process survives it.
    assert.deepEqual(internal, [], "calls answered with a server fault");
  });
});

const addressLike = new Set([
  "address",
  "host",
  "new_host",
  "hub_server_address",
  "server_url",
  "tcp",
  "member",
]);

/**
 * INTERNAL or UNKNOWN is a fault of the server. One is not ours: Connect answers a binary body it cannot
 * decode with INTERNAL "parse binary: …" before any corral code runs (@connectrpc/connect's
 * createBinarySerialization; JSON bodies get INVALID_ARGUMENT). The gRPC listeners answer
 * INVALID_ARGUMENT for the same bytes.
 */
function isServerFault(target: Target, outcome: Outcome): boolean {
  if (target.name === "web" && outcome.code === "INTERNAL" && outcome.message.startsWith("parse binary:"))
    return false;
  return outcome.code === "INTERNAL" || outcome.code === "UNKNOWN" || outcome.code.startsWith("HTTP_5");
}

/** The overall health a listener reports ("" service), or the status of the call if it failed. */
async function health(call: Caller): Promise<string> {
  const body = Buffer.from(toBinary(HealthCheckRequestSchema, create(HealthCheckRequestSchema, {})));
  const outcome = await call("/grpc.health.v1.Health/Check", body);
  if (outcome.code !== "OK" || outcome.response === undefined) return outcome.code;
  const answer = fromBinary(HealthCheckResponseSchema, outcome.response);
  return HealthCheckResponse_ServingStatus[answer.status] ?? String(answer.status);
}

function alternate(first: Caller, second: Caller): Caller {
  let turn = 0;
  return (path, body) => (turn++ % 2 === 0 ? first(path, body) : second(path, body));
}
