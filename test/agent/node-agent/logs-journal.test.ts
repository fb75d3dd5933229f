import assert from "node:assert/strict";
import {
  chmodSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  realpathSync,
  rmSync,
  writeFileSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { setTimeout as sleep } from "node:timers/promises";
import { Code, ConnectError } from "@connectrpc/connect";
import { ServerCredentials } from "@grpc/grpc-js";
import { CommandExecutor } from "../../../src/agent/services/node-agent/exec/command-executor.ts";
import { execAndLogsService } from "../../../src/agent/services/node-agent/exec-and-logs-service.ts";
import { type LogEntry, NodeAgent } from "../../../src/gen/picontroller_pb.ts";
import { detectJournal, JournalLogSource } from "../../../src/host/logs/journal-log-source.ts";
import { LogSourceRegistry } from "../../../src/host/logs/log-source-registry.ts";
import { AgentLogRing } from "../../../src/host/logs/ring-log-source.ts";
import { RpcServer } from "../../../src/rpc/rpc-server.ts";
import { plaintextClient } from "../../helpers/clients.ts";

const line = (seconds: number, priority: number, message: string, unit = "corral-agent.service") =>
  JSON.stringify({
    __REALTIME_TIMESTAMP: String(seconds * 1_000_000),
    PRIORITY: String(priority),
    MESSAGE: message,
    _SYSTEMD_UNIT: unit,
    _PID: "42",
  });

/** A stand-in journalctl: records its argv; a tail prints newest first (-r); -f prints one entry and waits. */
function fakeJournalctl(dir: string): { path: string; argsFile: string; pidFile: string } {
  const path = join(dir, "journalctl");
  const argsFile = join(dir, "args");
  const pidFile = join(dir, "follow.pid");
  writeFileSync(
    path,
    `#!/bin/sh
printf '%s\\n' "$@" >> '${argsFile}'
echo --- >> '${argsFile}'
for a in "$@"; do
  if [ "$a" = "-f" ]; then
    echo $$ > '${pidFile}'
    echo '${line(1_700_000_100, 3, "live failure")}'
    exec sleep 30
  fi
done
echo '${line(1_700_000_003, 6, "third")}'
echo '${line(1_700_000_002, 4, "second warns")}'
echo 'not json'
echo '${line(1_700_000_001, 7, "first")}'
`,
  );
  chmodSync(path, 0o755);
  return { path, argsFile, pidFile };
}

function isAlive(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    return !["Z", "X"].includes(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[0] ?? "");
  } catch {
    return false;
  }
}

describe("StreamLogs from the journal", () => {
  const dir = realpathSync(mkdtempSync(join(tmpdir(), "corral-journal-")));
  const fake = fakeJournalctl(dir);
  const server = new RpcServer();
  let client: ReturnType<typeof plaintextClient<typeof NodeAgent>>;

  before(async () => {
    const logs = new LogSourceRegistry({
      agent: new AgentLogRing(),
      journal: new JournalLogSource({ journalctl: fake.path }),
    });
    server.add(NodeAgent, execAndLogsService({ executor: new CommandExecutor({ audit: () => {} }), logs }));
    const port = await server.listen("127.0.0.1:0", ServerCredentials.createInsecure());
    client = plaintextClient(NodeAgent, port);
  });

  after(async () => {
    await server.close(1_000);
    rmSync(dir, { recursive: true, force: true });
  });

  it("tails with journalctl -o json as argv, oldest first, with level and fields", {
    timeout: 10_000,
  }, async () => {
    writeFileSync(fake.argsFile, "");
    const entries: LogEntry[] = [];
    for await (const entry of client.streamLogs(
      { source: "journal", tail: 2, level: "warn" },
      { timeoutMs: 5_000 },
    ))
      entries.push(entry);
    assert.deepEqual(
      entries.map((e) => [e.level, e.message, e.timestamp]),
      [["warn", "second warns", 1_700_000_002_000n]],
    );
    assert.equal(entries[0]?.source, "journal");
    assert.equal(entries[0]?.fields.unit, "corral-agent.service");
    assert.equal(entries[0]?.fields.pid, "42");
    const args = readFileSync(fake.argsFile, "utf8").split("\n");
    assert.deepEqual(args.slice(0, args.indexOf("---")), [
      "-o",
      "json",
      "--no-pager",
      "-q",
      "-r",
      "-n",
      "2",
      "-p",
      "4",
    ]);

    const all: string[] = [];
    for await (const entry of client.streamLogs({ source: "journal", tail: 10 }, { timeoutMs: 5_000 }))
      all.push(entry.message);
    assert.deepEqual(all, ["first", "second warns", "third"]);
  });

  it("follows with journalctl -f and kills it when the client cancels", { timeout: 10_000 }, async () => {
    rmSync(fake.pidFile, { force: true });
    const controller = new AbortController();
    const seen: string[] = [];
    let outcome: unknown;
    try {
      for await (const entry of client.streamLogs(
        { source: "journal", follow: true },
        { signal: controller.signal, timeoutMs: 8_000 },
      )) {
        seen.push(entry.message);
        controller.abort();
      }
    } catch (error) {
      outcome = error;
    }
    assert.deepEqual(seen, ["live failure"]);
    assert.ok(outcome instanceof ConnectError && outcome.code === Code.Canceled, String(outcome));
    const pid = Number(readFileSync(fake.pidFile, "utf8"));
    const deadline = Date.now() + 3_000;
    while (isAlive(pid) && Date.now() < deadline) await sleep(20);
    assert.equal(isAlive(pid), false, "journalctl -f was killed");
  });

  it("detects a journal only where journalctl and journal files exist", async () => {
    const empty = join(dir, "empty");
    mkdirSync(empty);
    const none = join(dir, "none");
    assert.equal(await detectJournal({ safePath: dir, runDir: none, persistentDir: empty }), undefined);
    assert.equal(await detectJournal({ safePath: dir, runDir: empty, persistentDir: none }), fake.path);
    assert.equal(await detectJournal({ safePath: empty, runDir: empty, persistentDir: empty }), undefined);
    writeFileSync(join(empty, "machine-id"), "");
    assert.equal(await detectJournal({ safePath: dir, runDir: none, persistentDir: empty }), fake.path);
  });
});
