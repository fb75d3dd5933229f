import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { copyFile, mkdir, mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import type { NewJoinRequest } from "../../src/core/admission/join-requests.ts";
import { CertificateAuthority } from "../../src/security/certificate-authority.ts";
import { startTestController, type TestController } from "../helpers/controller.ts";
import { cleanCorralEnv, corralBin, runCorral } from "../helpers/corral-processes.ts";

let sequence = 0;

function joinRequest(name: string, overrides: Partial<NewJoinRequest> = {}): NewJoinRequest {
  sequence++;
  return {
    nodeId: "",
    name,
    metadata: {
      type: { kind: "string", value: "gpu-box" },
      raw: { kind: "bytes", value: new Uint8Array([0x01, 0x02, 0xff]) },
      blob: { kind: "bytes", value: new Uint8Array(40) },
    },
    address: `10.9.0.${sequence}:7444`,
    sourceAddress: `10.9.0.${sequence}`,
    keyFingerprint: `sha256:${sequence.toString(16).padStart(2, "0").repeat(32)}`,
    csrPem: "not a real CSR: the book only stores it",
    resources: { cpuCores: 4, memoryMb: 8192, gpus: [], maxLayers: 0, usedLayers: 0, disks: [] },
    services: [],
    labels: {},
    version: "0.1.0",
    ...overrides,
  };
}

const tokenPattern = /^corral1\.[0-9a-f]{64}\.[0-9a-z]{12}\.[A-Za-z0-9_-]{43}$/;

/** Runs the real CLI to completion (at most 30 s); `env` is added to the cleaned environment. */
const corralRun = (args: string[], env: Record<string, string> = {}) => runCorral(args, { env });

describe("corral requests, token and nodes against a real controller", () => {
  let cluster: TestController;
  let dir: string;
  let bridge: string;
  let clusterAddress: string;
  let credentials: string;
  const viaBridge = (...args: string[]) => corralRun(["--server", bridge, ...args]);

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), "corral-cli-admin-"));
    cluster = await startTestController({ node: { name: "CLI Test Controller" } });
    bridge = `127.0.0.1:${cluster.bridgePort}`;
    clusterAddress = `127.0.0.1:${cluster.clusterPort}`;
    credentials = cluster.controller.adminCredentialsDir;
  });
  after(async () => {
    await cluster?.close();
    if (dir !== undefined) await rm(dir, { recursive: true, force: true });
  });

  describe("token", { timeout: 120_000 }, () => {
    it("creates a join token (only the token on stdout), lists it with its uses, revokes it", async () => {
      const created = await viaBridge(
        "token",
        "create",
        "--uses",
        "3",
        "--ttl",
        "2h",
        "--description",
        "rack 4",
      );
      assert.equal(created.code, 0, created.stderr);
      const token = created.stdout.trim();
      assert.match(token, tokenPattern, "stdout holds the token and nothing else");
      assert.equal(created.stdout, `${token}\n`);
      const id = token.split(".")[2] ?? "";
      assert.match(created.stderr, new RegExp(`join token ${id}`));
      assert.match(created.stderr, /3 uses/);

      // The printed token is the real one: spending a use shows in the listing.
      const redeemed = await cluster.controller.context.tokens.redeem(token, "node");
      assert.equal(redeemed.usesLeft, 2);

      const table = await viaBridge("token", "ls");
      assert.equal(table.code, 0, table.stderr);
      const row = table.stdout.split("\n").find((line) => line.startsWith(id));
      assert.ok(row, `token ${id} listed:\n${table.stdout}`);
      assert.match(row, /\bnode\s+2\/3\s+rack 4\s+local\b/);
      assert.match(row, /\bactive$/);
      assert.match(table.stdout.split("\n")[0] ?? "", /^ID\s+ROLE\s+USES LEFT\s+DESCRIPTION/);

      const json = await viaBridge("-o", "json", "token", "ls");
      assert.equal(json.code, 0, json.stderr);
      const listed = (JSON.parse(json.stdout) as { tokens: Record<string, unknown>[] }).tokens.find(
        (t) => t.id === id,
      );
      assert.deepEqual(
        [listed?.role, listed?.usesAllowed, listed?.usesLeft, listed?.revoked, listed?.description],
        ["ROLE_NODE", 3, 2, false, "rack 4"],
      );

      const revoked = await viaBridge("token", "revoke", id);
      assert.equal(revoked.code, 0, revoked.stderr);
      assert.match(revoked.stdout, new RegExp(`revoked node token ${id} \\(rack 4\\)`));

      const active = await viaBridge("token", "ls");
      assert.ok(!active.stdout.includes(id), "a revoked token is not listed without --all");
      const all = await viaBridge("token", "ls", "--all");
      assert.match(all.stdout.split("\n").find((line) => line.startsWith(id)) ?? "", /\brevoked$/);
      const allJson = JSON.parse((await viaBridge("-o", "json", "token", "ls", "--all")).stdout) as {
        tokens: { id: string; revoked: boolean }[];
      };
      assert.equal(allJson.tokens.find((t) => t.id === id)?.revoked, true);
      await assert.rejects(cluster.controller.context.tokens.redeem(token, "node"), /revoked/);

      const again = await viaBridge("token", "revoke", "nosuchtoken0");
      assert.equal(again.code, 1, again.stderr);
      assert.match(again.stderr, /NOT_FOUND: token "nosuchtoken0" not found/);
    });

    it("-o json token create gives the token, its info and the CA fingerprint", async () => {
      const result = await viaBridge("-o", "json", "token", "create", "--role", "viewer", "--ttl", "10m");
      assert.equal(result.code, 0, result.stderr);
      const json = JSON.parse(result.stdout) as {
        token: string;
        info: { role: string; expiresAt: string; createdAt: string };
        caFingerprint: string;
      };
      assert.match(json.token, tokenPattern);
      assert.equal(json.info.role, "ROLE_VIEWER");
      assert.equal(json.caFingerprint, cluster.controller.ca.fingerprint);
      const ttl = Date.parse(json.info.expiresAt) - Date.parse(json.info.createdAt);
      assert.equal(ttl, 10 * 60_000);
    });

    it("refuses bad flags with exit 2, names the flag, and creates nothing", async () => {
      const before = (await cluster.controller.context.tokens.list(true)).length;
      const cases: [string[], RegExp][] = [
        [["--ttl", "5x"], /--ttl: "5x" is not a duration/],
        [["--ttl", "0"], /--ttl: must be more than 0/],
        [["--ttl", "31d"], /--ttl: "31d" is more than 30d/],
        [["--uses", "many"], /--uses: "many" is not a number/],
        [["--role", "boss"], /--role <role>' argument 'boss' is invalid/],
        [["--role", "operator", "--uses", "2"], /--uses: only join tokens/],
      ];
      for (const [flags, message] of cases) {
        const result = await viaBridge("token", "create", ...flags);
        assert.equal(result.code, 2, `${flags.join(" ")}: ${result.stderr}`);
        assert.match(result.stderr, message);
        assert.equal(result.stdout, "", "nothing on stdout for a refused command");
      }
      assert.equal((await cluster.controller.context.tokens.list(true)).length, before);
    });
  });

  describe("requests", { timeout: 120_000 }, () => {
    it("lists a pending request, accepts it by name, and refuses to accept it twice", async () => {
      const book = cluster.controller.context.joinRequests;
      const input = joinRequest("node-x");
      const submitted = await book.submit(input, 300_000);

      const table = await viaBridge("requests", "ls");
      assert.equal(table.code, 0, table.stderr);
      const [header, ...rows] = table.stdout.trimEnd().split("\n");
      assert.match(
        header ?? "",
        /^ID\s+NAME\s+SOURCE\s+KEY FINGERPRINT\s+METADATA\s+AGE\s+EXPIRES IN\s+STATE$/,
      );
      const row = rows.find((line) => line.includes("node-x")) ?? "";
      assert.match(
        row,
        new RegExp(`^${submitted.id}\\s+node-x\\s+${input.sourceAddress.replaceAll(".", "\\.")}\\s`),
      );
      assert.ok(row.includes(input.keyFingerprint.slice(0, 23)), "the fingerprint's start is shown");
      assert.ok(!row.includes(input.keyFingerprint), "the table shortens the fingerprint");
      assert.match(row, /blob=<40 bytes>,raw=0x0102ff,type=gpu-box/);
      assert.match(row, /\s4m\d+s\s+pending$/);

      const json = await viaBridge("-o", "json", "requests", "ls");
      const listed = (JSON.parse(json.stdout) as { requests: Record<string, unknown>[] }).requests.find(
        (r) => r.name === "node-x",
      );
      assert.equal(listed?.keyFingerprint, input.keyFingerprint, "json keeps the whole fingerprint");
      assert.equal(listed?.state, "JOIN_REQUEST_STATE_PENDING");
      assert.equal(listed?.id, String(submitted.id));

      const accepted = await viaBridge("requests", "accept", "node-x", "--reason", "racked it myself");
      assert.equal(accepted.code, 0, accepted.stderr);
      assert.match(
        accepted.stdout,
        new RegExp(`^accepted join request ${submitted.id} \\(node-x, from 10\\.9`),
      );
      const record = await book.get(submitted.id);
      assert.equal(record.state, "accepted");
      assert.equal(record.reason, "racked it myself");

      const pending = await viaBridge("requests", "ls");
      assert.ok(!pending.stdout.includes("node-x"), "an accepted request is no longer pending");
      const all = await viaBridge("requests", "ls", "--all");
      assert.match(all.stdout.split("\n").find((line) => line.includes("node-x")) ?? "", /-\s+accepted$/);

      const twiceByName = await viaBridge("requests", "accept", "node-x");
      assert.equal(twiceByName.code, 1, twiceByName.stderr);
      assert.match(twiceByName.stderr, /already accepted/);
      const twiceById = await viaBridge("requests", "reject", String(submitted.id));
      assert.equal(twiceById.code, 1, twiceById.stderr);
      assert.match(twiceById.stderr, /FAILED_PRECONDITION: join request \d+ was already accepted/);
      assert.equal((await book.get(submitted.id)).state, "accepted", "the refused reject changed nothing");

      const nobody = await viaBridge("requests", "accept", "nobody");
      assert.equal(nobody.code, 1, nobody.stderr);
      assert.match(nobody.stderr, /NOT_FOUND/);
    });

    it("rejects by number, in json", async () => {
      const submitted = await cluster.controller.context.joinRequests.submit(joinRequest("node-r"), 300_000);
      const result = await viaBridge(
        "-o",
        "json",
        "requests",
        "reject",
        String(submitted.id),
        "--reason",
        "no",
      );
      assert.equal(result.code, 0, result.stderr);
      const json = JSON.parse(result.stdout) as { state: string; reason: string; decidedBy: string };
      assert.deepEqual(
        [json.state, json.reason, json.decidedBy],
        ["JOIN_REQUEST_STATE_REJECTED", "no", "local"],
      );
    });

    it("watch prints the pending requests, then new ones and decisions, until Ctrl-C", async () => {
      const book = cluster.controller.context.joinRequests;
      const first = await book.submit(joinRequest("watch-a"), 300_000);
      const child = spawn(
        process.execPath,
        [corralBin, "--server", bridge, "-o", "json", "requests", "watch"],
        {
          stdio: ["ignore", "pipe", "pipe"],
          env: cleanCorralEnv(),
        },
      );
      const exited = new Promise<number | null>((resolve) => child.once("exit", (code) => resolve(code)));
      let stdout = "";
      let stderr = "";
      child.stdout.on("data", (chunk: Buffer) => {
        stdout += chunk.toString();
      });
      child.stderr.on("data", (chunk: Buffer) => {
        stderr += chunk.toString();
      });
      const lines = () =>
        stdout
          .split("\n")
          .filter((line) => line !== "")
          .map((line) => JSON.parse(line) as { id: string; name: string; state: string });
      const waitFor = async (what: string, test: () => boolean) => {
        const deadline = Date.now() + 20_000;
        while (!test()) {
          if (child.exitCode !== null)
            assert.fail(`watch exited (${child.exitCode}) before ${what}: ${stderr}`);
          if (Date.now() > deadline) assert.fail(`no ${what} within 20 s; got:\n${stdout}\n${stderr}`);
          await new Promise((resolve) => setTimeout(resolve, 50));
        }
      };
      try {
        await waitFor("the pending request", () => lines().some((l) => l.name === "watch-a"));
        const second = await book.submit(joinRequest("watch-b"), 300_000);
        await waitFor("the new request", () =>
          lines().some((l) => l.name === "watch-b" && l.state === "JOIN_REQUEST_STATE_PENDING"),
        );
        const rejected = await viaBridge("requests", "reject", "watch-b");
        assert.equal(rejected.code, 0, rejected.stderr);
        await waitFor("the decision", () =>
          lines().some((l) => l.id === String(second.id) && l.state === "JOIN_REQUEST_STATE_REJECTED"),
        );
        assert.equal(lines()[0]?.id, String(first.id));
        child.kill("SIGINT");
        const code = await Promise.race([
          exited,
          new Promise<string>((resolve) => setTimeout(() => resolve("still running"), 10_000)),
        ]);
        assert.equal(code, 0, `watch ends cleanly on Ctrl-C: ${stderr}`);
      } finally {
        child.kill("SIGKILL");
      }
    });
  });

  describe("nodes", { timeout: 120_000 }, () => {
    it("shows a node readably and removes it, printing what was removed", async () => {
      const registry = cluster.controller.context.registry;
      const node = await registry.register({
        name: "agent-rm",
        role: "agent",
        address: "10.0.0.21:7444",
        status: "ready",
        services: ["PIPELINES", "LOGGING"],
        metadata: {
          rack: { kind: "string", value: "r4" },
          serial: { kind: "bytes", value: new Uint8Array([0xab]) },
        },
        labels: { zone: "eu-1" },
        resources: {
          cpuCores: 8,
          memoryMb: 16_384,
          maxLayers: 40,
          usedLayers: 10,
          gpus: [{ name: "A100", memoryMb: 40_960, uuid: "GPU-1" }],
        },
      });

      const shown = await viaBridge("nodes", "show", "agent-rm");
      assert.equal(shown.code, 0, shown.stderr);
      for (const line of [
        /^name:\s+agent-rm$/m,
        new RegExp(`^id:\\s+${node.id}$`, "m"),
        /^status:\s+ready$/m,
        /^role:\s+agent$/m,
        /^address:\s+10\.0\.0\.21:7444$/m,
        /^services:\s+logging, pipelines$/m,
        /^last seen:\s+\d+s ago \(\d{4}-/m,
        /^resources:\n {2}cpu cores:\s+8\n {2}memory:\s+16 GiB\n {2}gpus:\s+A100 \(40 GiB, GPU-1\)\n {2}layers:\s+10 used of 40$/m,
        /^metadata:\n {2}rack:\s+r4\n {2}serial:\s+0xab$/m,
        /^labels:\n {2}zone:\s+eu-1$/m,
      ]) {
        assert.match(shown.stdout, line);
      }
      const json = await viaBridge("-o", "json", "nodes", "get", node.id);
      assert.equal(json.code, 0, json.stderr);
      assert.equal((JSON.parse(json.stdout) as { name: string }).name, "agent-rm");

      const removed = await viaBridge("nodes", "rm", "agent-rm");
      assert.equal(removed.code, 0, removed.stderr);
      assert.equal(removed.stdout, `removed node agent-rm (id ${node.id}, 10.0.0.21:7444, was ready)\n`);
      await assert.rejects(registry.get(node.id), /not found/);

      const again = await viaBridge("nodes", "rm", "agent-rm");
      assert.equal(again.code, 1, again.stderr);
      assert.match(again.stderr, /NOT_FOUND: node "agent-rm" not found/);
      const controller = await viaBridge("nodes", "rm", "CLI Test Controller");
      assert.equal(controller.code, 1, controller.stderr);
      assert.match(controller.stderr, /FAILED_PRECONDITION: CLI Test Controller is a controller/);
    });

    it("nodes rm -o json prints the removed node", async () => {
      const node = await cluster.controller.context.registry.register({
        name: "agent-rm-json",
        role: "agent",
      });
      const result = await viaBridge("-o", "json", "nodes", "rm", node.id);
      assert.equal(result.code, 0, result.stderr);
      const json = JSON.parse(result.stdout) as { id: string; name: string };
      assert.deepEqual([json.id, json.name], [node.id, "agent-rm-json"]);
    });
  });

  describe("transport", { timeout: 120_000 }, () => {
    it("speaks mutual TLS to the cluster listener with --credentials", async () => {
      const result = await corralRun([
        "--server",
        clusterAddress,
        "--credentials",
        credentials,
        "-o",
        "json",
        "nodes",
        "ls",
      ]);
      assert.equal(result.code, 0, result.stderr);
      const json = JSON.parse(result.stdout) as { nodes: { name: string }[] };
      assert.ok(json.nodes.some((n) => n.name === "CLI Test Controller"));

      const created = await corralRun([
        "--server",
        clusterAddress,
        "--credentials",
        credentials,
        "token",
        "create",
      ]);
      assert.equal(created.code, 0, created.stderr);
      const id = created.stdout.trim().split(".")[2] ?? "";
      const record = (await cluster.controller.context.tokens.list()).find((t) => t.id === id);
      assert.equal(record?.createdBy, "admin:admin", "the controller saw the admin certificate");
    });

    it("takes the server and the credentials from the environment", async () => {
      const result = await corralRun(["status"], {
        CORRAL_SERVER: clusterAddress,
        CORRAL_CREDENTIALS: credentials,
      });
      assert.equal(result.code, 0, result.stderr);
      assert.match(result.stdout, /controller\s+CLI Test Controller/);
      // The SQLite store reports its version and size, as etcd does.
      assert.match(result.stdout, /store ok\s+yes, SQLite 3\.\d+\.\d+, revision \d+, \d+(\.\d+)? [KM]iB/);
    });

    it("is refused without credentials on the cluster listener", async () => {
      const anonymous = await corralRun([
        "--server",
        clusterAddress,
        "--ca",
        join(credentials, "ca.crt"),
        "nodes",
        "ls",
      ]);
      assert.equal(anonymous.code, 1, anonymous.stderr);
      assert.match(
        anonymous.stderr,
        /UNAUTHENTICATED: \/corral\.v1\.NodesService\/ListNodes needs a client certificate from this cluster's CA or an operator token/,
      );
      const plaintext = await corralRun(["--server", clusterAddress, "nodes", "ls"]);
      assert.equal(plaintext.code, 1, plaintext.stderr);
      assert.match(plaintext.stderr, /speaks TLS: give --credentials/);
    });

    it("sends an operator token as a bearer header, and the token's role applies", async () => {
      const ca = join(credentials, "ca.crt");
      const operator = (await viaBridge("token", "create", "--role", "operator")).stdout.trim();
      const viewer = (await viaBridge("token", "create", "--role", "viewer")).stdout.trim();
      assert.match(operator, tokenPattern);
      assert.match(viewer, tokenPattern);

      const listed = await corralRun([
        "--server",
        clusterAddress,
        "--ca",
        ca,
        "--token",
        operator,
        "nodes",
        "ls",
      ]);
      assert.equal(listed.code, 0, listed.stderr);
      assert.match(listed.stdout, /CLI Test Controller/);
      // With --credentials the token still decides who the caller is: only ca.crt is used from the dir.
      const denied = await corralRun([
        "--server",
        clusterAddress,
        "--credentials",
        credentials,
        "--token",
        operator,
        "token",
        "create",
      ]);
      assert.equal(denied.code, 1, denied.stderr);
      assert.match(
        denied.stderr,
        /PERMISSION_DENIED: .*role operator.*may not call \/corral\.v1\.TokensService\/CreateToken/,
      );
      const viewerDenied = await corralRun(["token", "ls"], {
        CORRAL_SERVER: clusterAddress,
        CORRAL_CA: ca,
        CORRAL_TOKEN: viewer,
      });
      assert.equal(viewerDenied.code, 1, viewerDenied.stderr);
      assert.match(viewerDenied.stderr, /PERMISSION_DENIED: .*role viewer/);

      const operatorId = operator.split(".")[2] ?? "";
      assert.equal((await viaBridge("token", "revoke", operatorId)).code, 0);
      const revoked = await corralRun([
        "--server",
        clusterAddress,
        "--ca",
        ca,
        "--token",
        operator,
        "nodes",
        "ls",
      ]);
      assert.equal(revoked.code, 1, revoked.stderr);
      assert.match(revoked.stderr, /UNAUTHENTICATED: token \w+ was revoked/);
    });

    it("exits 2 naming the file or flag when the credentials are incomplete", async () => {
      const partial = join(dir, "partial");
      await mkdir(partial);
      await copyFile(join(credentials, "ca.crt"), join(partial, "ca.crt"));
      await copyFile(join(credentials, "client.crt"), join(partial, "client.crt"));
      const missingKey = await corralRun([
        "--server",
        clusterAddress,
        "--credentials",
        partial,
        "nodes",
        "ls",
      ]);
      assert.equal(missingKey.code, 2, missingKey.stderr);
      assert.match(missingKey.stderr, /--credentials: \S+\/partial\/client\.key does not exist/);

      const noDir = await corralRun(["--credentials", join(dir, "nowhere"), "nodes", "ls"]);
      assert.equal(noDir.code, 2, noDir.stderr);
      assert.match(noDir.stderr, /--credentials: \S+nowhere is not a directory/);

      const noCa = await corralRun(["--ca", join(dir, "missing-ca.crt"), "nodes", "ls"]);
      assert.equal(noCa.code, 2, noCa.stderr);
      assert.match(noCa.stderr, /--ca: \S+missing-ca\.crt does not exist/);

      const tokenAlone = await corralRun(["--server", clusterAddress, "--token", "corral1.x", "nodes", "ls"]);
      assert.equal(tokenAlone.code, 2, tokenAlone.stderr);
      assert.match(tokenAlone.stderr, /--token: needs the controller's CA/);
    });

    it("takes global options after the subcommand, but leaves `up --token` (a join token) to the agent", async () => {
      const after = await corralRun(["nodes", "ls", "-o", "json", "--server", bridge]);
      assert.equal(after.code, 0, after.stderr);
      assert.ok((JSON.parse(after.stdout) as { nodes: unknown[] }).nodes.length > 0);

      // Were --token taken as the global operator token, the agent would join by request and keep retrying.
      const agent = await corralRun([
        "up",
        "--token",
        "not-a-token",
        "--join",
        "127.0.0.1:1",
        "--data-dir",
        join(dir, "agent"),
        "--grpc",
        "127.0.0.1:0",
        "--listen",
        "127.0.0.1:0",
        "--log-level",
        "silent",
      ]);
      assert.notEqual(agent.code, 0);
      assert.match(agent.stderr, /not a corral token/);
    });

    it("says so when the CA is not the cluster's, or TLS meets the plaintext bridge", async () => {
      const other = await CertificateAuthority.loadOrCreate(join(dir, "other-ca"), "other");
      const otherCa = join(dir, "other-ca", "ca.crt");
      assert.notEqual(other.fingerprint, cluster.controller.ca.fingerprint);
      const untrusted = await corralRun(["--server", clusterAddress, "--ca", otherCa, "nodes", "ls"]);
      assert.equal(untrusted.code, 1, untrusted.stderr);
      assert.match(
        untrusted.stderr,
        /UNAUTHENTICATED: the controller at \S+ presented a certificate the given CA does not vouch for/,
      );

      const operator = (await viaBridge("token", "create", "--role", "operator")).stdout.trim();
      const mismatch = await corralRun([
        "--server",
        clusterAddress,
        "--ca",
        otherCa,
        "--token",
        operator,
        "nodes",
        "ls",
      ]);
      assert.equal(mismatch.code, 2, mismatch.stderr);
      assert.match(mismatch.stderr, /--token: belongs to the cluster whose CA is sha256:/);

      const tlsToBridge = await corralRun(["--server", bridge, "--credentials", credentials, "nodes", "ls"]);
      assert.equal(tlsToBridge.code, 1, tlsToBridge.stderr);
      assert.match(tlsToBridge.stderr, /does not speak TLS: is it the loopback bridge\?/);
    });
  });
});
