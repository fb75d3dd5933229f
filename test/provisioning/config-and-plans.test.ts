import assert from "node:assert/strict";
import { mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { CorralError } from "../../src/base/errors.ts";
import { resolveControllerConfig } from "../../src/controller/config.ts";
import { PlanLibrary, shippedPlansDir } from "../../src/controller/provisioning-plans.ts";

describe("the controller YAML's provisioning block", () => {
  it("defaults to <data dir>/plans and 4 nodes at once", () => {
    const config = resolveControllerConfig({ dataDir: "/srv/corral" }, "/etc/corral");
    assert.deepEqual(config.provisioning, { plansDir: "/srv/corral/plans", concurrency: 4 });
  });

  it("takes plansDir (relative to the config file) and concurrency", () => {
    const config = resolveControllerConfig(
      { dataDir: "/srv/corral", provisioning: { plansDir: "plans.d", concurrency: 8 } },
      "/etc/corral",
    );
    assert.deepEqual(config.provisioning, { plansDir: "/etc/corral/plans.d", concurrency: 8 });
  });

  it("names the key it refuses", () => {
    const refused = (raw: unknown, pattern: RegExp) =>
      assert.throws(
        () => resolveControllerConfig(raw, "/etc/corral", {}, "corral.yaml"),
        (e: unknown) => e instanceof CorralError && e.code === "INVALID_ARGUMENT" && pattern.test(e.message),
      );
    refused({ provisioning: { concurrency: 0 } }, /^corral\.yaml: provisioning\.concurrency: /);
    refused({ provisioning: { concurrency: 1000 } }, /provisioning\.concurrency: /);
    refused({ provisioning: { plansDir: "" } }, /provisioning\.plansDir: /);
    refused({ provisioning: { plansdir: "/x" } }, /provisioning\.plansdir: is not a known key/);
  });
});

describe("the plan library", () => {
  let dir: string;
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), "corral-plans-"));
  });
  after(() => rm(dir, { recursive: true, force: true }));

  it("adds operator plans to the shipped ones, picks the highest version, and reports refused files by name", async () => {
    const operator = join(dir, "operator");
    await mkdir(operator);
    const plan = (version: string) => `name: mine\nversion: "${version}"\nsteps: [{ exec: [uptime] }]\n`;
    await writeFile(join(operator, "mine-1.yaml"), plan("1.9"));
    await writeFile(join(operator, "mine-2.yml"), plan("1.10"));
    await writeFile(
      join(operator, "broken.yaml"),
      "name: broken\nversion: 1\nsteps:\n  - name: oops\n    exec: []\n",
    );
    await writeFile(join(operator, "notes.txt"), "not a plan");
    const library = new PlanLibrary([
      { path: shippedPlansDir, label: "shipped" },
      { path: operator, label: "operator" },
      { path: join(dir, "missing"), label: "operator" },
    ]);
    const catalog = await library.load();
    assert.deepEqual(
      catalog.plans.map((p) => `${p.name}@${p.version}`),
      [
        "base@1.0.0",
        "k3s-agent@1.0.0",
        "k3s-agent-uninstall@1.0.0",
        "k3s-server@1.0.0",
        "k3s-server-uninstall@1.0.0",
        "mine@1.10",
        "mine@1.9",
      ],
    );
    assert.equal(catalog.resolve("mine").version, "1.10");
    assert.equal(catalog.resolve("mine@1.9").source, join(operator, "mine-1.yaml"));
    assert.deepEqual(catalog.problems, [
      {
        file: join(operator, "broken.yaml"),
        message: `${join(operator, "broken.yaml")}:5: step 1 ("oops"): exec: needs at least the program to run`,
      },
    ]);
    assert.throws(
      () => catalog.resolve("broken"),
      (e: unknown) =>
        e instanceof CorralError && e.code === "FAILED_PRECONDITION" && /step 1 \("oops"\)/.test(e.message),
    );
    assert.throws(
      () => catalog.resolve("mine@3"),
      (e: unknown) =>
        e instanceof CorralError &&
        e.code === "NOT_FOUND" &&
        /has no version 3 \(there are 1.10, 1.9\)/.test(e.message),
    );
  });

  it("refuses a second file with the same name and version in one folder", async () => {
    const twice = join(dir, "twice");
    await mkdir(twice);
    const text = "name: same\nversion: 1\nsteps: [{ exec: [uptime] }]\n";
    await writeFile(join(twice, "a.yaml"), text);
    await writeFile(join(twice, "b.yaml"), text);
    const catalog = await new PlanLibrary([{ path: twice, label: "operator" }]).load();
    assert.equal(catalog.plans.length, 1);
    assert.match(catalog.problems[0]?.message ?? "", /b\.yaml: plan same@1 is defined in .*a\.yaml already/);
  });
});
