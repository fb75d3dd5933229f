import assert from "node:assert/strict";
import { chmod, mkdir, mkdtemp, readFile, rm, stat, writeFile } from "node:fs/promises";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { runProcess } from "../../src/agent/provisioning/process-runner.ts";
import { runSteps, type StepRunnerOptions } from "../../src/agent/provisioning/step-runner.ts";
import type { StepEvent, StepSpec } from "../../src/core/provisioning/provisioning-step.ts";
import { agentIdentity } from "../../src/host/run-as.ts";

const node = process.execPath;
/**
 * These tests are about the runner's mechanics, in the test's own temp dirs: steps run as the test's
 * user, as a node configured `--provision-as root` would (run-as.test.ts checks the default).
 */
const asTestUser = agentIdentity();

async function run(steps: StepSpec[], options: Partial<StepRunnerOptions> = {}): Promise<StepEvent[]> {
  const events: StepEvent[] = [];
  for await (const event of runSteps(steps, {
    signal: AbortSignal.timeout(30_000),
    runAs: asTestUser,
    ...options,
  }))
    events.push(event);
  return events;
}

/** The final event of each step, by index. */
function ends(events: readonly StepEvent[]): StepEvent[] {
  const out: StepEvent[] = [];
  for (const event of events) if (event.status !== "running") out[event.index] = event;
  return out;
}

const outputOf = (events: readonly StepEvent[], index: number) =>
  events
    .filter((e) => e.index === index)
    .map((e) => e.output ?? "")
    .join("");

/** Running (a zombie waiting for init to reap it counts as dead: it runs nothing any more). */
async function alive(pid: number): Promise<boolean> {
  const stat = await readFile(`/proc/${pid}/stat`, "utf8").catch(() => undefined);
  return stat !== undefined && stat.slice(stat.lastIndexOf(")") + 2)[0] !== "Z";
}

async function gone(pid: number, timeoutMs = 5_000): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (!(await alive(pid))) return true;
    await new Promise((resolve) => setTimeout(resolve, 25));
  }
  return false;
}

/** A program that starts a grandchild (same process group), writes both pids, and waits. */
const parentAndChild = (pidFile: string) => [
  node,
  "-e",
  `const { spawn } = require("node:child_process");
   const child = spawn(process.execPath, ["-e", "setInterval(() => {}, 1000)"], { stdio: "ignore" });
   require("node:fs").writeFileSync(${JSON.stringify(pidFile)}, process.pid + " " + child.pid);
   console.log("started");
   setInterval(() => {}, 1000);`,
];

describe("the agent's step runner", () => {
  let dir: string;
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), "corral-steps-"));
  });
  after(() => rm(dir, { recursive: true, force: true }));

  it("runs argv without a shell: metacharacters reach the program as they are", async () => {
    const events = await run([
      { name: "echo", kind: "exec", exec: { argv: ["echo", "$(id) ; rm -rf / && `x` | y > z"] } },
    ]);
    assert.equal(ends(events)[0]?.status, "succeeded");
    assert.equal(outputOf(events, 0), "$(id) ; rm -rf / && `x` | y > z\n");
    await assert.rejects(stat(join(process.cwd(), "z")), /ENOENT/);
  });

  it("reports start, output and end; stops at the first failure and skips the rest", async () => {
    const events = await run([
      { name: "ok", kind: "exec", exec: { argv: [node, "-e", "console.log('out'); console.error('err')"] } },
      { name: "bad", kind: "exec", exec: { argv: [node, "-e", "console.error('boom'); process.exit(3)"] } },
      { name: "never", kind: "exec", exec: { argv: ["true"] } },
    ]);
    assert.deepEqual(
      events.filter((e) => e.output === undefined).map((e) => [e.index, e.status]),
      [
        [0, "running"],
        [0, "succeeded"],
        [1, "running"],
        [1, "failed"],
        [2, "skipped"],
      ],
    );
    assert.match(outputOf(events, 0), /out\n/);
    assert.match(outputOf(events, 0), /err\n/);
    const bad = ends(events)[1];
    assert.equal(bad?.exitCode, 3);
    assert.equal(bad?.message, "exit code 3: boom");
    assert.equal(ends(events)[2]?.message, "not run: step 2 failed");
  });

  it("says so when the program does not exist", async () => {
    const [end] = ends(await run([{ name: "x", kind: "exec", exec: { argv: ["corral-no-such-program"] } }]));
    assert.equal(end?.status, "failed");
    assert.match(end?.message ?? "", /cannot run corral-no-such-program: no such program/);
  });

  it("guards: `creates` and `unless` make a step unchanged", async () => {
    const flag = join(dir, "flag");
    await writeFile(flag, "");
    const events = await run([
      { name: "creates", kind: "exec", exec: { argv: ["false"], creates: flag } },
      { name: "unless holds", kind: "exec", exec: { argv: ["false"], unless: ["test", "-f", flag] } },
      {
        name: "unless fails",
        kind: "exec",
        exec: { argv: ["echo", "ran"], unless: ["test", "-f", `${flag}.no`] },
      },
    ]);
    assert.deepEqual(
      ends(events).map((e) => [e.status, e.message]),
      [
        ["unchanged", `creates: ${flag} exists`],
        ["unchanged", `unless: \`test -f ${flag}\` succeeded`],
        ["succeeded", "exit code 0"],
      ],
    );
    assert.equal(outputOf(events, 2), "ran\n");
  });

  it("caps output per step and marks it cut", async () => {
    const events = await run(
      [
        {
          name: "loud",
          kind: "exec",
          exec: { argv: [node, "-e", "process.stdout.write('x'.repeat(100000))"] },
        },
      ],
      { maxOutputBytes: 1000 },
    );
    assert.equal(outputOf(events, 0).length, 1000);
    assert.equal(ends(events)[0]?.outputTruncated, true);
    assert.equal(ends(events)[0]?.status, "succeeded");
  });

  it("a timeout kills the step's whole process group, grandchildren included", async () => {
    const pidFile = join(dir, "timeout.pids");
    const started = Date.now();
    const [end] = ends(
      await run([{ name: "hang", kind: "exec", exec: { argv: parentAndChild(pidFile), timeoutMs: 1_000 } }], {
        killGraceMs: 500,
      }),
    );
    assert.equal(end?.status, "failed");
    assert.match(end?.message ?? "", /^timed out after 1s; the process group was killed/);
    assert.ok(Date.now() - started < 10_000);
    const [parent, child] = (await readFile(pidFile, "utf8")).split(" ").map(Number);
    assert.ok(await gone(parent ?? 0), "the program is gone");
    assert.ok(await gone(child ?? 0), "its child is gone too");
  });

  it("cancelling kills the running step's process group and reports the rest skipped", async () => {
    const pidFile = join(dir, "cancel.pids");
    const abort = new AbortController();
    const events: StepEvent[] = [];
    for await (const event of runSteps(
      [
        { name: "hang", kind: "exec", exec: { argv: parentAndChild(pidFile) } },
        { name: "after", kind: "exec", exec: { argv: ["true"] } },
      ],
      { signal: abort.signal, killGraceMs: 500, runAs: asTestUser },
    )) {
      events.push(event);
      if (event.output?.includes("started")) abort.abort();
    }
    assert.deepEqual(
      ends(events).map((e) => e.status),
      ["failed", "skipped"],
    );
    assert.match(ends(events)[0]?.message ?? "", /^cancel/);
    assert.equal(ends(events)[1]?.message, "not run: the run was cancelled");
    const [parent, child] = (await readFile(pidFile, "utf8")).split(" ").map(Number);
    assert.ok(await gone(parent ?? 0));
    assert.ok(await gone(child ?? 0));
  });

  it("a consumer that stops reading stops the step too (the controller's call was cut)", async () => {
    const pidFile = join(dir, "return.pids");
    const iterator = runSteps([{ name: "hang", kind: "exec", exec: { argv: parentAndChild(pidFile) } }], {
      signal: new AbortController().signal,
      killGraceMs: 500,
      runAs: asTestUser,
    });
    for await (const event of iterator) if (event.output?.includes("started")) break;
    const [parent, child] = (await readFile(pidFile, "utf8")).split(" ").map(Number);
    assert.ok(await gone(parent ?? 0));
    assert.ok(await gone(child ?? 0));
  });

  it("file: writes atomically with the mode, then reports unchanged; a mode change alone is applied in place", async () => {
    const path = join(dir, "etc", "app", "app.conf");
    const step = (content: string, mode: number): StepSpec => ({
      name: "conf",
      kind: "file",
      file: { path, content, mode },
    });
    const [created] = ends(await run([step("a=1\n", 0o640)]));
    assert.equal(created?.status, "succeeded");
    assert.match(created?.message ?? "", /created/);
    assert.equal(await readFile(path, "utf8"), "a=1\n");
    assert.equal((await stat(path)).mode & 0o7777, 0o640);

    const [same] = ends(await run([step("a=1\n", 0o640)]));
    assert.equal(same?.status, "unchanged");

    const inode = (await stat(path)).ino;
    const [chmodded] = ends(await run([step("a=1\n", 0o600)]));
    assert.equal(chmodded?.status, "succeeded");
    assert.match(chmodded?.message ?? "", /mode 0640 → 0600/);
    assert.equal((await stat(path)).ino, inode, "changed in place");

    const [rewritten] = ends(await run([step("a=2\n", 0o600)]));
    assert.match(rewritten?.message ?? "", /content changed/);
    assert.notEqual((await stat(path)).ino, inode, "replaced by rename");
    assert.equal(await readFile(path, "utf8"), "a=2\n");

    await mkdir(join(dir, "adir"));
    const [directory] = ends(
      await run([{ name: "d", kind: "file", file: { path: join(dir, "adir"), content: "", mode: 0o644 } }]),
    );
    assert.equal(directory?.status, "failed");
    assert.match(directory?.message ?? "", /is a directory/);
  });

  it("file: an owner that cannot be found fails the step with the reason", async () => {
    const [end] = ends(
      await run([
        {
          name: "owned",
          kind: "file",
          file: { path: join(dir, "owned"), content: "", mode: 0o644, owner: "corral-no-such-user" },
        },
      ]),
    );
    assert.equal(end?.status, "failed");
    assert.match(end?.message ?? "", /no user named "corral-no-such-user"/);
  });

  it("waitFor: a file, a command, a TCP port; and a timeout that says what it waited for", async () => {
    const later = join(dir, "later");
    const timer = setTimeout(() => void writeFile(later, ""), 300);
    const server = createServer((socket) => socket.destroy());
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
    const port = (server.address() as { port: number }).port;
    try {
      const events = await run([
        {
          name: "file",
          kind: "waitFor",
          waitFor: { condition: { file: later }, timeoutMs: 5_000, intervalMs: 50 },
        },
        {
          name: "exec",
          kind: "waitFor",
          waitFor: { condition: { exec: ["test", "-f", later] }, timeoutMs: 5_000, intervalMs: 50 },
        },
        {
          name: "tcp",
          kind: "waitFor",
          waitFor: { condition: { tcp: `127.0.0.1:${port}` }, timeoutMs: 5_000, intervalMs: 50 },
        },
      ]);
      assert.deepEqual(
        ends(events).map((e) => e.status),
        ["succeeded", "succeeded", "succeeded"],
      );
      assert.match(ends(events)[0]?.message ?? "", /exists after \d+ checks/);
    } finally {
      clearTimeout(timer);
      await new Promise((resolve) => server.close(resolve));
    }
    const started = Date.now();
    const [timeout] = ends(
      await run([
        {
          name: "never",
          kind: "waitFor",
          waitFor: { condition: { tcp: `127.0.0.1:${port}` }, timeoutMs: 600, intervalMs: 100 },
        },
      ]),
    );
    assert.equal(timeout?.status, "failed");
    assert.match(
      timeout?.message ?? "",
      new RegExp(
        `^timed out after 0.6s waiting until 127.0.0.1:${port} accepts TCP; last check: .*ECONNREFUSED`,
      ),
    );
    assert.ok(Date.now() - started < 3_000);
  });

  it("systemd: fails clearly where systemd is not running", async () => {
    const [end] = ends(
      await run([{ name: "s", kind: "systemd", systemd: { unit: "k3s.service", action: "enable" } }], {
        systemdRunDir: join(dir, "no-systemd"),
      }),
    );
    assert.equal(end?.status, "failed");
    assert.match(
      end?.message ?? "",
      /^systemd is not running on this node .*`systemctl enable k3s.service` cannot run/,
    );
  });

  it("systemd: asks systemd first and runs `systemctl <action> -- <unit>` only when needed", async () => {
    // A stand-in systemctl that records its argv and answers is-enabled / is-active from a state file.
    const runDir = join(dir, "run-systemd");
    await mkdir(runDir);
    const log = join(dir, "systemctl.log");
    const state = join(dir, "systemctl.state");
    const fake = join(dir, "systemctl");
    await writeFile(
      fake,
      `#!${node}
const fs = require("node:fs");
const args = process.argv.slice(2);
fs.appendFileSync(${JSON.stringify(log)}, args.join(" ") + "\\n");
const state = fs.existsSync(${JSON.stringify(state)}) ? fs.readFileSync(${JSON.stringify(state)}, "utf8") : "";
if (args[0] === "is-enabled") { console.log(state.includes("enabled") ? "enabled" : "disabled"); process.exit(state.includes("enabled") ? 0 : 1); }
if (args[0] === "is-active") { console.log(state.includes("active") ? "active" : "inactive"); process.exit(state.includes("active") ? 0 : 3); }
if (args[0] === "enable") fs.appendFileSync(${JSON.stringify(state)}, "enabled ");
if (args[0] === "start") fs.appendFileSync(${JSON.stringify(state)}, "active ");
console.log("did " + args[0]);
`,
    );
    await chmod(fake, 0o755);
    const steps: StepSpec[] = [
      { name: "enable", kind: "systemd", systemd: { unit: "k3s.service", action: "enable" } },
      { name: "start", kind: "systemd", systemd: { unit: "k3s.service", action: "start" } },
    ];
    const options = { systemctl: fake, systemdRunDir: runDir };
    const first = await run(steps, options);
    assert.deepEqual(
      ends(first).map((e) => e.status),
      ["succeeded", "succeeded"],
    );
    assert.equal(outputOf(first, 0), "did enable\n");
    const second = ends(await run(steps, options));
    assert.deepEqual(
      second.map((e) => [e.status, e.message]),
      [
        ["unchanged", "k3s.service is enabled already"],
        ["unchanged", "k3s.service is active already"],
      ],
    );
    assert.deepEqual((await readFile(log, "utf8")).trim().split("\n"), [
      "is-enabled -- k3s.service",
      "enable -- k3s.service",
      "is-active -- k3s.service",
      "start -- k3s.service",
      "is-enabled -- k3s.service",
      "is-active -- k3s.service",
    ]);
  });

  it("runProcess never starts a shell and refuses an empty argv", async () => {
    const result = await runProcess({
      argv: [],
      timeoutMs: 1000,
      killGraceMs: 100,
      signal: new AbortController().signal,
    });
    assert.equal(result.spawnError, "no program given");
  });
});
