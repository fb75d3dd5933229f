import assert from "node:assert/strict";
import { mkdtemp, readFile, rm, stat, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { readSealingKey } from "../../src/security/ca-key-file.ts";
import { CertificateAuthority } from "../../src/security/certificate-authority.ts";
import { joinWithToken, startTestAgent, type TestAgent } from "../helpers/agent.ts";
import { startTestController, type TestController } from "../helpers/controller.ts";
import { runCorral } from "../helpers/corral-processes.ts";

/** The real CLI, without the caller's CORRAL_* settings, to completion (at most 60 s). */
const run = (args: string[]) => runCorral(args, { timeoutMs: 60_000 });

describe("corral certs", () => {
  let cluster: TestController;
  let node: TestAgent;
  let dir: string;
  let server: string[];

  before(async () => {
    cluster = await startTestController();
    node = await startTestAgent({ name: "cli-node", trustRefreshInterval: "200ms" });
    await joinWithToken(cluster, node);
    dir = await mkdtemp(join(tmpdir(), "corral-certs-cli-"));
    server = ["--server", `127.0.0.1:${cluster.bridgePort}`];
  });
  after(async () => {
    await node?.close();
    await cluster?.close();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  it("ls lists the certificates in use; show prints one", async () => {
    const listed = await run([...server, "certs", "ls"]);
    assert.equal(listed.code, 0, listed.stderr);
    assert.match(listed.stdout, /^SERIAL\s+KIND\s+OWNER\s+STATUS/m);
    const line = listed.stdout.split("\n").find((l) => / node +cli-node /.test(l));
    assert.ok(line, listed.stdout);
    const serial = line.split(/\s+/)[0] ?? "";
    const shown = await run([...server, "certs", "show", serial]);
    assert.equal(shown.code, 0, shown.stderr);
    assert.match(shown.stdout, /status:\s+valid \(in use\)/);
    assert.match(shown.stdout, /uris:\s+corral:\/\/node\//);
    const json = await run([...server, "-o", "json", "certs", "ls", "--kind", "node"]);
    const parsed = JSON.parse(json.stdout) as { certificates: { kind: string }[] };
    assert.ok(parsed.certificates.every((c) => c.kind === "CERTIFICATE_KIND_NODE"));
  });

  it("validate says valid, and exits 1 with the reason for a foreign certificate", async () => {
    const good = await run([...server, "certs", "validate", join(node.dataDir, "node.crt")]);
    assert.equal(good.code, 0, good.stderr);
    assert.match(good.stdout, /: valid\n/);
    const foreign = await CertificateAuthority.loadOrCreate(join(dir, "foreign"), "foreign");
    const issued = await foreign.issue({
      commonName: "x",
      dnsNames: [],
      ipAddresses: [],
      validityMs: 60_000,
      usage: "server",
    });
    await writeFile(join(dir, "foreign.crt"), issued.certificatePem);
    const bad = await run([...server, "certs", "validate", join(dir, "foreign.crt")]);
    assert.equal(bad.code, 1);
    assert.match(bad.stdout, /NOT valid/);
    assert.match(bad.stdout, /does not chain to this cluster's CA/);
    await writeFile(join(dir, "junk.crt"), "junk");
    const junk = await run([...server, "certs", "validate", join(dir, "junk.crt")]);
    assert.equal(junk.code, 2, "bad input is a usage error");
    assert.match(junk.stderr, /INVALID_ARGUMENT/);
  });

  it("renew waits for the node's new certificate; revoke --node cuts it off", async () => {
    const renewed = await run([...server, "certs", "renew", "cli-node"]);
    assert.equal(renewed.code, 0, renewed.stderr);
    assert.match(renewed.stdout, /cli-node renewed its certificate: serial [0-9a-f]+/);
    const revoked = await run([...server, "certs", "revoke", "--node", "cli-node", "--reason", "retired"]);
    assert.equal(revoked.code, 0, revoked.stderr);
    assert.match(revoked.stdout, /revoked node certificate [0-9a-f]+ \(cli-node\)/);
    const stats = await run([...server, "certs", "stats"]);
    assert.equal(stats.code, 0, stats.stderr);
    assert.match(stats.stdout, /revoked:\s+[1-9]/);
    assert.match(stats.stdout, /issued in 24h:\s+\d+ \(.*node \d+/);
  });

  it("rotate starts a rotation that status and certs ca show", async () => {
    const rotated = await run([...server, "certs", "rotate", "--overlap", "1h"]);
    assert.equal(rotated.code, 0, rotated.stderr);
    assert.match(rotated.stdout, /^new CA sha256:[0-9a-f]{64}$/m);
    const ca = await run([...server, "certs", "ca"]);
    assert.match(ca.stdout, /presenting/);
    assert.match(ca.stdout, /issuing/);
    assert.match(ca.stdout, /rotation:\s+under way/);
    const status = await run([...server, "status"]);
    assert.equal(status.code, 0, status.stderr);
    assert.match(status.stdout, /ca rotation under way since/);
    const again = await run([...server, "certs", "rotate"]);
    assert.equal(again.code, 1);
    assert.match(again.stderr, /FAILED_PRECONDITION: a CA rotation is already under way/);
  });

  it("keygen writes a 0600 key file that a controller accepts", async () => {
    const path = join(dir, "sealing.key");
    const made = await run(["certs", "keygen", path]);
    assert.equal(made.code, 0, made.stderr);
    assert.equal((await stat(path)).mode & 0o777, 0o600);
    const key = await readSealingKey(path);
    assert.equal(key.bytes.length, 32);
    assert.match(made.stdout, new RegExp(`key ${key.id}`));
    const again = await run(["certs", "keygen", path]);
    assert.equal(again.code, 2);
    assert.equal((await readFile(path, "utf8")).trim(), key.bytes.toString("base64"));
  });
});
