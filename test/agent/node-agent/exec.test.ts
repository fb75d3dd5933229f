import assert from "node:assert/strict";
import { readdirSync, readFileSync } from "node:fs";
import { after, before, describe, it } from "node:test";
import { setTimeout as sleep } from "node:timers/promises";
import { Code, ConnectError } from "@connectrpc/connect";
import { ServerCredentials } from "@grpc/grpc-js";
import {
  CommandExecutor,
  type ExecAuditEntry,
} from "../../../src/agent/services/node-agent/exec/command-executor.ts";
import { execAndLogsService } from "../../../src/agent/services/node-agent/exec-and-logs-service.ts";
import { NodeAgent } from "../../../src/gen/picontroller_pb.ts";
import { LogSourceRegistry } from "../../../src/host/logs/log-source-registry.ts";
import { AgentLogRing } from "../../../src/host/logs/ring-log-source.ts";
import { RpcServer } from "../../../src/rpc/rpc-server.ts";
import {
  checkInvocation,
  compileAllowList,
  defaultCommands,
  Refusal,
} from "../../../src/security/exec-allow-list.ts";
import { plaintextClient } from "../../helpers/clients.ts";

/** Processes (not zombies) whose process group is `pgid`, read from /proc. */
function liveMembersOf(pgid: number): number[] {
  const members: number[] = [];
  for (const name of readdirSync("/proc")) {
    if (!/^\d+$/.test(name)) continue;
    let stat: string;
    try {
      stat = readFileSync(`/proc/${name}/stat`, "utf8");
    } catch {
      continue;
    }
    // pid (comm) state ppid pgrp …; comm may hold spaces and parentheses.
    const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    const state = fields[0];
    if (Number(fields[2]) === pgid && state !== "Z" && state !== "X") members.push(Number(name));
  }
  return members;
}

async function waitUntilGroupGone(pgid: number, withinMs = 3_000): Promise<number[]> {
  const deadline = Date.now() + withinMs;
  let members = liveMembersOf(pgid);
  while (members.length > 0 && Date.now() < deadline) {
    await sleep(50);
    members = liveMembersOf(pgid);
  }
  return members;
}

function isAlive(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    const state = stat.slice(stat.lastIndexOf(")") + 2).split(" ")[0];
    return state !== "Z" && state !== "X";
  } catch {
    return false;
  }
}

const testCommands = {
  ...defaultCommands,
  // A shell that starts a background sleep (a grandchild of the agent) and then sleeps itself.
  "test-sleep-tree": {
    path: "/bin/sh",
    description: "test only",
    timeoutMs: 500,
    args: { maxCount: 0, fixedPrefix: ["-c", "sleep 30 & echo $!; echo $$; sleep 30"] },
  },
  "test-flood": {
    path: "/bin/sh",
    description: "test only",
    args: { maxCount: 0, fixedPrefix: ["-c", "head -c 300000 /dev/zero | tr '\\000' a; echo to-stderr >&2"] },
  },
  "test-env": {
    path: "/bin/sh",
    description: "test only",
    args: { maxCount: 0, fixedPrefix: ["-c", "env; read x || echo stdin-closed"] },
  },
};

describe("ExecuteCommand", () => {
  const server = new RpcServer();
  const audits: ExecAuditEntry[] = [];
  const groups: number[] = [];
  const executor = new CommandExecutor({
    commands: testCommands,
    audit: (entry) => audits.push(entry),
    onSpawn: (pid) => groups.push(pid),
  });
  let client: ReturnType<typeof plaintextClient<typeof NodeAgent>>;

  before(async () => {
    const logs = new LogSourceRegistry({ agent: new AgentLogRing(), journal: null });
    server.add(NodeAgent, execAndLogsService({ executor, logs }));
    const port = await server.listen("127.0.0.1:0", ServerCredentials.createInsecure());
    client = plaintextClient(NodeAgent, port);
  });

  after(async () => {
    await server.close(1_000);
    // Nothing any test started may still run.
    for (const pgid of groups)
      assert.deepEqual(await waitUntilGroupGone(pgid), [], `process group ${pgid} left behind`);
  });

  it("runs an allowed command (uptime) and audits it", { timeout: 15_000 }, async () => {
    const response = await client.executeCommand({ command: "uptime" }, { timeoutMs: 10_000 });
    assert.equal(response.exitCode, 0, response.stderr);
    assert.match(response.stdout, /load average/);
    assert.equal(response.timedOut, false);
    assert.equal(response.truncated, false);
    assert.ok(response.durationMs >= 0n && response.durationMs < 10_000n);
    assert.match(response.auditId, /^[0-9a-f-]{36}$/);
    const audit = audits.find((a) => a.id === response.auditId);
    assert.ok(audit, "an audit record with the response's id");
    assert.equal(audit.outcome, "ok");
    assert.equal(audit.command, "uptime");
    assert.equal(audit.exitCode, 0);
    assert.equal(audit.caller, "anonymous");
  });

  it("runs df -h", { timeout: 15_000 }, async () => {
    const response = await client.executeCommand({ command: "df", args: ["-h", "/"] }, { timeoutMs: 10_000 });
    assert.equal(response.exitCode, 0, response.stderr);
    assert.match(response.stdout, /Filesystem/);
    assert.match(response.stdout, /\s\/\n?$/m);
  });

  it("runs with stdin closed and only PATH and LANG in the environment", { timeout: 15_000 }, async () => {
    const response = await client.executeCommand({ command: "test-env" }, { timeoutMs: 10_000 });
    const env = response.stdout
      .split("\n")
      .filter((line) => /^[A-Za-z_][A-Za-z0-9_]*=/.test(line))
      .map((line) => line.slice(0, line.indexOf("=")))
      // The shell sets PWD (and some shells SHLVL, _) itself.
      .filter((name) => !["PWD", "SHLVL", "_", "OLDPWD"].includes(name))
      .sort();
    assert.deepEqual(env, ["LANG", "PATH"]);
    assert.match(response.stdout, /^PATH=\/usr\/sbin:\/usr\/bin:\/sbin:\/bin$/m);
    assert.match(response.stdout, /stdin-closed/);
  });

  const refused: { name: string; command: string; args?: string[] }[] = [
    { name: "sh -c", command: "sh", args: ["-c", "echo pwned"] },
    { name: "bash -c", command: "bash", args: ["-c", "id"] },
    { name: "rm -rf /", command: "rm", args: ["-rf", "/"] },
    { name: "/bin/sh", command: "/bin/sh" },
    { name: "../../bin/sh", command: "../../bin/sh" },
    { name: "a name with a slash", command: "df/../sh" },
    { name: "df; rm", command: "df; rm" },
    { name: "a shell operator as an argument", command: "df", args: ["-h;", "rm"] },
    { name: "an argument with a newline", command: "df", args: ["/\nrm -rf /"] },
    { name: "an argument with NUL", command: "df", args: ["/\0"] },
    { name: "df with a .. path", command: "df", args: ["/var/../etc"] },
    { name: "journalctl -f", command: "journalctl", args: ["-f"] },
    { name: "journalctl --follow", command: "journalctl", args: ["-u", "ssh", "--follow"] },
    { name: "journalctl -fn", command: "journalctl", args: ["-fn", "10"] },
    { name: "journalctl -n over the cap", command: "journalctl", args: ["-n", "5000"] },
    { name: "journalctl --vacuum-size", command: "journalctl", args: ["--vacuum-size=1K"] },
    { name: "too many arguments", command: "uptime", args: ["-p", "-p"] },
    { name: "cat of a file that is not allowed", command: "cat", args: ["/etc/shadow"] },
    { name: "cat with traversal", command: "cat", args: ["/proc/../etc/shadow"] },
    { name: "ping -c over the cap", command: "ping", args: ["-c", "100", "localhost"] },
    { name: "ping flood", command: "ping", args: ["-f", "localhost"] },
    { name: "ping to an option-looking host", command: "ping", args: ["--", "-localhost"] },
    { name: "hostname that would set the name", command: "hostname", args: ["evil"] },
    { name: "ip that would change a link", command: "ip", args: ["link", "set", "eth0", "down"] },
    { name: "ss -K (kills sockets)", command: "ss", args: ["-K"] },
    { name: "free -s (never ends)", command: "free", args: ["-s", "1"] },
    { name: "vcgencmd display_power 0", command: "vcgencmd", args: ["display_power", "0"] },
    { name: "__proto__", command: "__proto__" },
    { name: "constructor", command: "constructor" },
  ];
  for (const { name, command, args } of refused) {
    it(`refuses ${name} with PERMISSION_DENIED`, { timeout: 10_000 }, async () => {
      const before = audits.length;
      const error = await client.executeCommand({ command, args: args ?? [] }, { timeoutMs: 5_000 }).then(
        () => undefined,
        (e: unknown) => e,
      );
      assert.ok(error instanceof ConnectError, `expected an error, got ${String(error)}`);
      assert.equal(error.code, Code.PermissionDenied, error.message);
      assert.match(error.rawMessage, /Allowed commands: uptime, df, free, ip, ss, journalctl/);
      const audit = audits.at(-1);
      assert.equal(audits.length, before + 1);
      assert.equal(audit?.outcome, "denied");
      assert.equal(error.metadata.get("corral-audit_id"), audit?.id);
    });
  }

  it("answers INVALID_ARGUMENT naming the field", { timeout: 10_000 }, async () => {
    for (const [request, field] of [
      [{ command: "" }, "command"],
      [{ command: "uptime", timeoutSeconds: -1 }, "timeout_seconds"],
      [{ command: "x".repeat(100) }, "command"],
    ] as const) {
      const error = await client.executeCommand(request, { timeoutMs: 5_000 }).then(
        () => undefined,
        (e: unknown) => e,
      );
      assert.ok(error instanceof ConnectError);
      assert.equal(error.code, Code.InvalidArgument);
      assert.ok(error.rawMessage.startsWith(`${field}:`), error.rawMessage);
    }
  });

  it("kills the whole process group on timeout", { timeout: 15_000 }, async () => {
    const started = Date.now();
    const response = await client.executeCommand({ command: "test-sleep-tree" }, { timeoutMs: 10_000 });
    assert.equal(response.timedOut, true);
    assert.equal(response.exitCode, 128 + 9, "killed by SIGKILL");
    assert.ok(response.durationMs >= 450n && response.durationMs < 5_000n, `duration ${response.durationMs}`);
    assert.ok(Date.now() - started < 5_000);
    const [background, shell] = response.stdout.trim().split("\n").map(Number);
    assert.ok(
      background !== undefined && shell !== undefined && background > 0 && shell > 0,
      response.stdout,
    );
    assert.ok(groups.includes(shell), "the shell leads its own process group");
    assert.deepEqual(await waitUntilGroupGone(shell), [], "no process of the group survives");
    assert.equal(isAlive(background), false, "the background grandchild was killed too");
    assert.equal(audits.find((a) => a.id === response.auditId)?.outcome, "timed_out");
  });

  it("kills the process group when the caller cancels", { timeout: 15_000 }, async () => {
    const long = new CommandExecutor({
      commands: {
        ...testCommands,
        "test-sleep-tree": { ...testCommands["test-sleep-tree"], timeoutMs: 30_000 },
      },
      audit: (entry) => audits.push(entry),
      onSpawn: (pid) => groups.push(pid),
    });
    const spawnedBefore = groups.length;
    const controller = new AbortController();
    const run = long.execute({ command: "test-sleep-tree", args: [], signal: controller.signal });
    while (groups.length === spawnedBefore) await sleep(10);
    await sleep(100);
    controller.abort();
    const result = await run;
    assert.equal(result.timedOut, false);
    assert.equal(audits.find((a) => a.id === result.auditId)?.outcome, "cancelled");
    assert.deepEqual(await waitUntilGroupGone(groups.at(-1) as number), []);
  });

  it("caps output and flags it as truncated", { timeout: 15_000 }, async () => {
    const response = await client.executeCommand({ command: "test-flood" }, { timeoutMs: 10_000 });
    assert.equal(response.exitCode, 0);
    assert.equal(response.truncated, true);
    assert.equal(response.stdout.length, 64 * 1024);
    assert.match(response.stdout, /^a+$/);
    assert.equal(response.stderr, "to-stderr\n");
    assert.equal(audits.find((a) => a.id === response.auditId)?.truncated, true);
  });

  it("answers FAILED_PRECONDITION for an allowed command that is not installed", {
    timeout: 10_000,
  }, async () => {
    const missing = new CommandExecutor({
      commands: { nosuch: { description: "missing", binary: "corral-no-such-tool" } },
      audit: () => {},
    });
    await assert.rejects(missing.execute({ command: "nosuch", args: [] }), { code: "FAILED_PRECONDITION" });
  });
});

describe("allow-list", () => {
  const table = compileAllowList(defaultCommands);
  const argv = (command: string, args: string[]) => {
    const result = checkInvocation(table, command, args);
    if (result instanceof Refusal) throw new Error(result.reason);
    return result.argv;
  };

  it("bounds journalctl and never lets it page or follow", () => {
    assert.deepEqual(argv("journalctl", ["-u", "corral-agent", "-p", "warning"]), [
      "-n",
      "200",
      "-u",
      "corral-agent",
      "-p",
      "warning",
      "--no-pager",
    ]);
    assert.deepEqual(argv("journalctl", ["-n", "1000", "--since", "1 hour ago"]), [
      "-n",
      "1000",
      "--since",
      "1 hour ago",
      "--no-pager",
    ]);
    assert.ok(checkInvocation(table, "journalctl", ["-n", "1001"]) instanceof Refusal);
    assert.ok(checkInvocation(table, "journalctl", ["-u", "x", "-f"]) instanceof Refusal);
  });

  it("makes ip show, and bounds ping", () => {
    assert.deepEqual(argv("ip", ["addr"]), ["addr", "show"]);
    assert.deepEqual(argv("ip", ["-br", "link", "show", "dev", "eth0"]), [
      "-br",
      "link",
      "show",
      "dev",
      "eth0",
    ]);
    assert.deepEqual(argv("ip", ["route", "dev", "eth0"]), ["route", "show", "dev", "eth0"]);
    assert.deepEqual(argv("ping", ["example.com"]), ["-c", "3", "-W", "2", "example.com"]);
    assert.deepEqual(argv("ping", ["-c", "5", "-W", "5", "fe80::1%eth0"]), [
      "-c",
      "5",
      "-W",
      "5",
      "fe80::1%eth0",
    ]);
    assert.ok(checkInvocation(table, "ping", ["-W", "6", "example.com"]) instanceof Refusal);
    assert.ok(checkInvocation(table, "ping", ["a.com", "b.com"]) instanceof Refusal);
    assert.ok(checkInvocation(table, "ping", []) instanceof Refusal);
  });

  it("accepts the documented diagnostic forms", () => {
    for (const [command, args] of [
      ["ss", ["-tunlp"]],
      ["free", ["-m"]],
      ["free", ["-h"]],
      ["df", ["-hT", "/var/log"]],
      ["uname", ["-a"]],
      ["hostname", []],
      ["cat", ["/proc/loadavg", "/proc/meminfo"]],
      ["vcgencmd", ["measure_temp"]],
      ["vcgencmd", ["get_throttled"]],
      ["vcgencmd", ["measure_clock", "arm"]],
    ] as const) {
      const result = checkInvocation(table, command, [...args]);
      assert.ok(!(result instanceof Refusal), `${command} ${args.join(" ")}: ${(result as Refusal).reason}`);
    }
  });

  it("rejects configuration with relative paths", () => {
    assert.throws(() => compileAllowList({ x: { description: "", path: "bin/x" } }));
    assert.throws(() => compileAllowList({ "a/b": { description: "" } }));
  });
});
