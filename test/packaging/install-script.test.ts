import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { existsSync, readdirSync, readFileSync } from "node:fs";
import { copyFile, mkdir, mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { eventually, nodeToken } from "../helpers/agent.ts";
import { startTestController, type TestController } from "../helpers/controller.ts";
import { packBuiltPackage } from "../helpers/package.ts";

const repoRoot = join(import.meta.dirname, "../..");

interface Result {
  code: number;
  stdout: string;
  stderr: string;
}

function runFile(
  file: string,
  args: string[],
  options: { cwd?: string; timeoutMs: number },
): Promise<Result> {
  return new Promise((resolve) => {
    execFile(
      file,
      args,
      { cwd: options.cwd, timeout: options.timeoutMs, killSignal: "SIGKILL", maxBuffer: 16 * 1024 * 1024 },
      (error, stdout, stderr) =>
        resolve({
          code: error === null ? 0 : typeof error.code === "number" ? error.code : -1,
          stdout,
          stderr,
        }),
    );
  });
}

/** Processes whose command line mentions `text` (the data dir of one install), from /proc. */
function processesMentioning(text: string): number[] {
  const found: number[] = [];
  for (const pid of readdirSync("/proc")) {
    if (!/^\d+$/.test(pid) || Number(pid) === process.pid) continue;
    try {
      if (!readFileSync(`/proc/${pid}/cmdline`, "utf8").includes(text)) continue;
      const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
      if (stat.slice(stat.lastIndexOf(")") + 2)[0] !== "Z") found.push(Number(pid));
    } catch {
      // gone while reading
    }
  }
  return found;
}

/**
 * The one-line join against a real controller on loopback: the script it serves installs the packed
 * tarball into a temp prefix (npm offline, from its cache) and starts the agent, which joins. Wrong
 * token, wrong CA and a tampered package each fail clearly and leave nothing running.
 */
describe("the install script (/install.sh, /corral.tgz)", { timeout: 900_000 }, () => {
  let dir: string;
  let served: string;
  let cluster: TestController;
  let webUrl: string;
  const started: string[] = [];

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), "corral-install-"));
    // Packed once for the file, built as a release is (prepack: the dashboard and dist/).
    const tarball = await packBuiltPackage(dir);
    served = join(dir, "served.tgz");
    await copyFile(tarball, served);
    cluster = await startTestController({ web: { address: "127.0.0.1:0", installPackage: served } });
    webUrl = `http://127.0.0.1:${cluster.webPort}`;
  });
  after(async () => {
    for (const dataDir of started) {
      const pidFile = join(dataDir, "agent.pid");
      if (existsSync(pidFile)) {
        try {
          process.kill(Number(readFileSync(pidFile, "utf8").trim()), "SIGKILL");
        } catch {
          // already gone
        }
      }
      for (const pid of processesMentioning(dataDir)) {
        try {
          process.kill(pid, "SIGKILL");
        } catch {
          // already gone
        }
      }
    }
    await cluster?.close();
    if (dir !== undefined) await rm(dir, { recursive: true, force: true });
  });

  // npm takes a minute or more here: a token that outlives the install.
  const longToken = () => nodeToken(cluster, { ttlMs: 30 * 60_000 });
  const fetchScript = async (name: string) => {
    const response = await fetch(`${webUrl}/install.sh`);
    assert.equal(response.status, 200, await response.clone().text());
    const file = join(dir, `${name}.sh`);
    await writeFile(file, await response.text());
    return file;
  };
  const install = async (name: string, token: string, script?: string) => {
    const prefix = join(dir, name, "prefix");
    const dataDir = join(dir, name, "data");
    await mkdir(join(dir, name), { recursive: true });
    started.push(dataDir);
    const result = await runFile(
      "sh",
      [
        script ?? (await fetchScript(name)),
        "--token",
        token,
        "--no-service",
        "--prefix",
        prefix,
        "--data-dir",
        dataDir,
        "--name",
        name,
        "--offline",
        // No native builds: compiling better-sqlite3 and the I²C/SPI bindings takes minutes on 2 cores.
        "--no-native",
        "--",
        "--grpc",
        "127.0.0.1:0",
        "--listen",
        "127.0.0.1:0",
      ],
      { timeoutMs: 600_000 },
    );
    return { ...result, prefix, dataDir };
  };

  it("serves the script with the cluster address and the package's digest, and the CA", async () => {
    const script = await readFile(await fetchScript("look"), "utf8");
    assert.match(script, new RegExp(`CORRAL_CLUSTER='127\\.0\\.0\\.1:${cluster.clusterPort}'`));
    const digest = (await runFile("sha256sum", [served], { timeoutMs: 30_000 })).stdout.split(" ")[0];
    assert.match(script, new RegExp(`CORRAL_SHA256='${digest}'`));
    const ca = await (await fetch(`${webUrl}/ca.pem`)).text();
    assert.equal(ca, cluster.controller.ca.presentingCertificatePem);
    const syntax = await runFile("sh", ["-n", join(dir, "look.sh")], { timeoutMs: 10_000 });
    assert.equal(syntax.code, 0, syntax.stderr);
  });

  it("installs corral from the tarball and starts an agent that joins and becomes ready", async (t) => {
    const result = await install("node-ok", await longToken());
    if (result.code !== 0 && /ENOTCACHED/.test(result.stderr)) {
      t.skip(
        "npm's cache lacks corral's dependencies, so an --offline install cannot run here; fill it once " +
          "with `npm install -g --prefix $(mktemp -d) <corral tgz>` while the registry is reachable",
      );
      return;
    }
    assert.equal(result.code, 0, `${result.stdout}\n${result.stderr}`);
    assert.match(result.stdout, /joined 127\.0\.0\.1:\d+/);
    assert.ok(existsSync(join(result.prefix, "bin", "corral")));
    const config = await readFile(join(result.dataDir, "agent.yaml"), "utf8");
    assert.match(config, /caFingerprint: 'sha256:[0-9a-f]{64}'/);
    const node = await eventually(
      async () => {
        const record = await cluster.controller.context.registry.get("node-ok");
        return record.status === "ready" ? record : undefined;
      },
      60_000,
      "node-ok ready",
    );
    assert.equal(node.name, "node-ok");
    const pid = Number(readFileSync(join(result.dataDir, "agent.pid"), "utf8").trim());
    assert.ok(processesMentioning(result.dataDir).includes(pid), "the agent of the pid file runs");
  });

  it("refuses a wrong token (bad secret) before installing, and leaves nothing running", async () => {
    const good = await longToken();
    const bad = `${good.slice(0, -4)}${good.endsWith("AAAA") ? "BBBB" : "AAAA"}`;
    const result = await install("node-badtoken", bad);
    assert.notEqual(result.code, 0);
    assert.match(result.stderr, /the controller refused the token: /);
    assert.equal(existsSync(join(result.prefix, "bin", "corral")), false, "nothing installed");
    assert.deepEqual(processesMentioning(result.dataDir), []);
  });

  it("refuses a token for another CA before downloading the package", async () => {
    const good = await longToken();
    const otherCa = good.replace(
      /^corral1\.([0-9a-f]{64})\./,
      (_, hex: string) => `corral1.${hex.startsWith("0") ? "1" : "0"}${hex.slice(1)}.`,
    );
    const result = await install("node-wrongca", otherCa);
    assert.notEqual(result.code, 0);
    assert.match(result.stderr, /the controller's CA is sha256:[0-9a-f]{64}, but the token is for sha256:/);
    assert.doesNotMatch(result.stdout + result.stderr, /corral\.tgz|installing/);
    assert.equal(existsSync(result.prefix), false, "nothing installed");
    assert.deepEqual(processesMentioning(result.dataDir), []);
  });

  it("refuses a package that changed since the script was written (digest mismatch)", async () => {
    const script = await fetchScript("node-tampered");
    const bytes = await readFile(served);
    bytes[bytes.length - 10] = (bytes[bytes.length - 10] ?? 0) ^ 0xff;
    await writeFile(served, bytes);
    const result = await install("node-tampered", await longToken(), script);
    assert.notEqual(result.code, 0);
    assert.match(
      result.stderr,
      /the package's sha256 is [0-9a-f]{64}, not [0-9a-f]{64} as install\.sh says: refusing/,
    );
    assert.equal(existsSync(result.prefix), false, "nothing installed");
    assert.deepEqual(processesMentioning(result.dataDir), []);
  });

  it("corral token create prints the line to run on a node", async () => {
    const created = await runFile(
      process.execPath,
      [
        join(repoRoot, "bin/corral.js"),
        "--server",
        `127.0.0.1:${cluster.bridgePort}`,
        "token",
        "create",
        "--ttl",
        "5m",
      ],
      { timeoutMs: 60_000 },
    );
    assert.equal(created.code, 0, created.stderr);
    const token = created.stdout.trim();
    assert.match(token, /^corral1\./);
    assert.ok(
      created.stderr.includes(`curl -fsSL ${webUrl}/install.sh | sh -s -- --token ${token}`),
      created.stderr,
    );
  });

  it("without web.installPackage, packs this corral once into <data dir>/package", async () => {
    const plain = await startTestController();
    try {
      const response = await fetch(`http://127.0.0.1:${plain.webPort}/install.sh`);
      assert.equal(response.status, 200, await response.clone().text());
      const digest = /CORRAL_SHA256='([0-9a-f]{64})'/.exec(await response.text())?.[1];
      const packDir = join(plain.dataDir, "package");
      const made = readdirSync(packDir).filter((name) => name.endsWith(".tgz"));
      assert.equal(made.length, 1);
      const sum = (await runFile("sha256sum", [join(packDir, made[0] ?? "")], { timeoutMs: 30_000 })).stdout;
      assert.equal(sum.split(" ")[0], digest);
    } finally {
      await plain.close();
    }
  });

  it("off loopback (HTTPS), the line pins the web listener's key: curl accepts that key and no other", async () => {
    // Bound to every interface so that the listener is HTTPS; the test reaches it on 127.0.0.1 only.
    const secure = await startTestController({ web: { address: "0.0.0.0:0", installPackage: served } });
    try {
      const created = await runFile(
        process.execPath,
        [join(repoRoot, "bin/corral.js"), "--server", `127.0.0.1:${secure.bridgePort}`, "token", "create"],
        { timeoutMs: 60_000 },
      );
      assert.equal(created.code, 0, created.stderr);
      const line =
        /curl -fsSL -k --pinnedpubkey (sha256\/\/\S+) https:\/\/\S+:(\d+)\/install\.sh \| sh -s -- --token /.exec(
          created.stderr,
        );
      assert.ok(line !== null, created.stderr);
      const url = `https://127.0.0.1:${line[2]}/ca.pem`;
      const pinned = await runFile("curl", ["-fsS", "-k", "--pinnedpubkey", line[1] ?? "", url], {
        timeoutMs: 30_000,
      });
      assert.equal(pinned.code, 0, pinned.stderr);
      assert.equal(pinned.stdout, secure.controller.ca.presentingCertificatePem);
      const otherKey = `sha256//${Buffer.alloc(32, 7).toString("base64")}`;
      const refused = await runFile("curl", ["-fsS", "-k", "--pinnedpubkey", otherKey, url], {
        timeoutMs: 30_000,
      });
      assert.notEqual(refused.code, 0, "curl refuses a listener whose key is not the pinned one");
    } finally {
      await secure.close();
    }
  });

  it("answers 503 with what to do when there is no package", async () => {
    await rm(served);
    const response = await fetch(`${webUrl}/install.sh`);
    assert.equal(response.status, 503);
    assert.match(await response.text(), /web\.installPackage/);
  });
});
