import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { CorralError } from "../../src/base/errors.ts";
import { PlanLibrary, shippedPlansDir } from "../../src/controller/provisioning-plans.ts";
import {
  compareVersions,
  type Plan,
  PlanError,
  parsePlan,
  parsePlanRef,
} from "../../src/core/provisioning/provisioning-plan.ts";
import { describeStep } from "../../src/core/provisioning/provisioning-step.ts";
import {
  type Builtins,
  renderSteps,
  resolveParameters,
} from "../../src/core/provisioning/provisioning-template.ts";

const limits = { maxTimeoutMs: 7_200_000, maxFileContentBytes: 256 * 1024, maxParameterBytes: 4096 };
const builtins: Builtins = {
  "node.id": "n-1",
  "node.name": "pi-1",
  "node.address": "10.0.0.5",
  "cluster.id": "c-1",
  "job.id": "7",
};

function problemsOf(text: string, file = "plans/bad.yaml"): string[] {
  try {
    parsePlan(text, file);
  } catch (error) {
    assert.ok(error instanceof PlanError, String(error));
    assert.equal(error.code, "INVALID_ARGUMENT");
    return [...error.problems];
  }
  assert.fail("the plan was accepted");
}

describe("plan files", () => {
  it("reads a plan of every step kind", () => {
    const plan = parsePlan(
      `
name: demo
version: 2
description: every kind
parameters:
  dir: { required: true, pattern: "/[a-z/]+" }
  pkgs: { list: true, default: "a b" }
steps:
  - name: run
    exec: [echo, "{{dir}}"]
    creates: /etc/done
    unless: [test, -f, "{{dir}}/x"]
    env: { LANG: C }
    timeout: 30s
  - file: { path: "{{dir}}/f", content: "x\\n", mode: "0600", owner: "root:root" }
  - systemd: { unit: ssh.service, action: restart }
  - waitFor: { tcp: "127.0.0.1:22", timeout: 1m, interval: 500ms }
`,
      "plans/demo.yaml",
    );
    assert.equal(plan.version, "2");
    assert.deepEqual(
      plan.steps.map((s) => [s.name, s.kind]),
      [
        ["run", "exec"],
        ["file {{dir}}/f", "file"],
        ["restart ssh.service", "systemd"],
        ["wait", "waitFor"],
      ],
    );
    const [exec, file, , wait] = plan.steps;
    assert.deepEqual(exec?.kind === "exec" && exec.exec.timeoutMs, 30_000);
    assert.equal(file?.kind === "file" && file.file.mode, 0o600);
    assert.deepEqual(wait?.kind === "waitFor" && wait.waitFor, {
      condition: { tcp: "127.0.0.1:22" },
      timeoutMs: 60_000,
      intervalMs: 500,
    });
  });

  it("names the file, the line, the step and the field of every problem", () => {
    const problems = problemsOf(`name: bad
version: 1
steps:
  - name: first
    exec: [echo, ok]
  - name: write config
    file:
      path: /etc/x.conf
      content: hi
      mode: 644
  - name: two things
    exec: ["true"]
    systemd: { unit: x.service, action: enable }
  - name: wrong action
    systemd: { unit: x.service, action: reload }
  - name: unknown key
    exec: [ls]
    shell: true
  - name: typo
    exec: [echo, "{{nmae}}"]
  - name: relative
    exec: [ls]
    creates: var/done
`);
    const expect = (pattern: RegExp) =>
      assert.ok(
        problems.some((p) => pattern.test(p)),
        `no problem matches ${pattern}:\n${problems.join("\n")}`,
      );
    expect(
      /^plans\/bad\.yaml:10: step 2 \("write config"\): file\.mode: 644 is not a mode; write it quoted in octal/,
    );
    expect(/^plans\/bad\.yaml:11: step 3 \("two things"\): has exec and systemd; a step does one thing/);
    expect(/^plans\/bad\.yaml:15: step 4 \("wrong action"\): systemd\.action: /);
    expect(/^plans\/bad\.yaml:1[67]: step 5 \("unknown key"\): .*"shell" is not a known key/);
    expect(
      /^plans\/bad\.yaml:20: step 6 \("typo"\): exec\[1\]: \{\{nmae\}\} is not a parameter of this plan/,
    );
    expect(/^plans\/bad\.yaml:23: step 7 \("relative"\): creates: "var\/done" is not an absolute path/);
    assert.equal(problems.length, 6, problems.join("\n"));
  });

  it("refuses broken YAML, bad names and parameters with a clear message", () => {
    assert.match(problemsOf("name: [unclosed\n")[0] ?? "", /^plans\/bad\.yaml:\d+: not valid YAML/);
    assert.match(
      problemsOf("name: Bad Name\nversion: 1\nsteps: [{exec: [ls]}]\n")[0] ?? "",
      /name: must be lower case/,
    );
    assert.match(
      problemsOf("name: x\nversion: 1\nsteps: []\n")[0] ?? "",
      /steps: a plan needs at least one step/,
    );
    assert.match(problemsOf("name: x\nsteps: [{exec: [ls]}]\n")[0] ?? "", /version: is required/);
    assert.match(
      problemsOf("name: x\nversion: 1\nsteps: [{exec: [true]}]\n")[0] ?? "",
      /step 1: exec\[0\]: must be a string; YAML read true as a boolean, so quote it: "true"/,
    );
    const parameters = problemsOf(`name: x
version: 1
parameters:
  a: { required: true, default: "1" }
  b: { pattern: "(" }
  c: { pattern: "[0-9]+", default: "abc" }
  bad-name: {}
steps: [{exec: [ls]}]
`);
    assert.ok(parameters.some((p) => /parameters\.a: is required and has a default/.test(p)));
    assert.ok(parameters.some((p) => /parameters\.b\.pattern: not a regular expression/.test(p)));
    assert.ok(parameters.some((p) => /parameters\.c\.default: "abc" does not match the pattern/.test(p)));
    assert.ok(parameters.some((p) => /parameters\.bad-name: is not a parameter name/.test(p)));
  });

  it("resolves name@version and compares versions numerically", () => {
    assert.deepEqual(parsePlanRef("base"), { name: "base" });
    assert.deepEqual(parsePlanRef("base@1.2.0"), { name: "base", version: "1.2.0" });
    assert.throws(() => parsePlanRef("../etc/passwd"), CorralError);
    assert.ok(compareVersions("1.10.0", "1.9.3") > 0);
    assert.ok(compareVersions("2", "10") < 0);
    assert.equal(compareVersions("1.0", "1.0"), 0);
  });
});

describe("parameters and substitution", () => {
  const plan: Plan = parsePlan(
    `
name: t
version: 1
parameters:
  host: { required: true, pattern: "[a-z0-9-]+" }
  pkgs: { list: true, default: "curl vim", pattern: "[a-z0-9][a-z0-9.+-]*" }
  note: { default: "" }
steps:
  - exec: [apt-get, install, -y, "{{pkgs}}"]
  - file: { path: "/etc/{{ host }}.conf", content: "host={{host}} on {{node.name}} ({{cluster.id}}) pkgs={{pkgs}} {{note}}\\n", mode: "0644" }
  - exec: [echo, "{{host}}-{{node.id}}"]
`,
    "t.yaml",
  );

  it("fills in values, defaults and node facts; a list becomes one argv element per item", () => {
    const values = resolveParameters(plan, { host: "pi-1" }, limits);
    assert.deepEqual(values, { host: "pi-1", pkgs: "curl vim", note: "" });
    const steps = renderSteps(plan, { ...values, pkgs: "curl, git jq" }, builtins, limits);
    assert.deepEqual(steps[0]?.kind === "exec" && steps[0].exec.argv, [
      "apt-get",
      "install",
      "-y",
      "curl",
      "git",
      "jq",
    ]);
    assert.deepEqual(steps[1]?.kind === "file" && [steps[1].file.path, steps[1].file.content], [
      "/etc/pi-1.conf",
      "host=pi-1 on pi-1 (c-1) pkgs=curl git jq \n",
    ]);
    assert.deepEqual(steps[2]?.kind === "exec" && steps[2].exec.argv, ["echo", "pi-1-n-1"]);
    assert.match(describeStep(steps[0] ?? assert.fail()), /^run `apt-get install -y curl git jq`$/);
  });

  it("refuses what could smuggle anything: unknown names, pattern misses, NUL, line breaks, option-looking items", () => {
    const refused = (given: Record<string, string>, pattern: RegExp) =>
      assert.throws(
        () => resolveParameters(plan, given, limits),
        (e: unknown) => e instanceof CorralError && e.code === "INVALID_ARGUMENT" && pattern.test(e.message),
      );
    refused({}, /parameters\.host: is required/);
    refused({ host: "pi-1", hots: "x" }, /no parameter "hots"/);
    refused({ host: "pi 1" }, /"pi 1" does not match/);
    refused({ host: "pi-1", note: "a\nb" }, /line break/);
    refused({ host: "pi-1", note: "a\rb" }, /line break/);
    refused({ host: "pi-1", note: "a\0b" }, /NUL/);
    refused(
      { host: "pi-1", pkgs: "curl --allow-unauthenticated" },
      /"--allow-unauthenticated" does not match/,
    );
    refused({ host: "pi-1", note: "x".repeat(5000) }, /longer than 4096 bytes/);
  });

  it("checks the filled-in steps too: a node fact or a value that makes a path relative is refused", () => {
    const relative = parsePlan(
      'name: r\nversion: 1\nparameters: { dir: {} }\nsteps: [{ file: { path: "{{dir}}/x", content: "", mode: "0644" } }]\n',
      "r.yaml",
    );
    assert.throws(
      () => renderSteps(relative, { dir: "tmp" }, builtins, limits),
      /step 1 \("file \{\{dir\}\}\/x"\)\.file\.path: "tmp\/x" is not an absolute path/,
    );
    const unit = parsePlan(
      "name: u\nversion: 1\nparameters: { unit: {} }\nsteps: [{ systemd: { unit: '{{unit}}', action: start } }]\n",
      "u.yaml",
    );
    assert.throws(() => renderSteps(unit, { unit: "--force" }, builtins, limits), /is not a unit name/);
    assert.throws(
      () =>
        renderSteps(
          plan,
          { host: "pi-1", pkgs: "", note: "" },
          { ...builtins, "node.name": "evil\nline" },
          limits,
        ),
      /node\.name: contains a line break/,
    );
  });
});

describe("the shipped plans", () => {
  it("load without problems and render with sample parameters", async () => {
    const catalog = await new PlanLibrary([{ path: shippedPlansDir, label: "shipped" }]).load();
    assert.deepEqual(catalog.problems, []);
    assert.deepEqual(
      catalog.plans.map((p) => p.name),
      ["base", "k3s-agent", "k3s-agent-uninstall", "k3s-server", "k3s-server-uninstall"],
    );
    const samples: Record<string, Record<string, string>> = {
      base: { hostname: "pi-1", packages: "curl,git" },
      "k3s-server": { token: "s3cret-token-0123456789" },
      "k3s-agent": { server: "https://10.0.0.10:6443", token: "K10abc::server:0123456789abcdef" },
    };
    for (const plan of catalog.plans) {
      const values = resolveParameters(plan, samples[plan.name] ?? {}, limits);
      const steps = renderSteps(plan, values, builtins, limits);
      assert.ok(steps.length >= (plan.name.endsWith("-uninstall") ? 3 : 5), plan.name);
      for (const step of steps) assert.ok(describeStep(step).length > 0);
    }
    const base = catalog.resolve("base");
    const install = renderSteps(
      base,
      resolveParameters(base, samples.base ?? {}, limits),
      builtins,
      limits,
    ).at(-1);
    assert.deepEqual(install?.kind === "exec" && install.exec.argv.slice(-2), ["curl", "git"]);
    assert.equal(base.source, "plans/base.yaml");
  });
});
