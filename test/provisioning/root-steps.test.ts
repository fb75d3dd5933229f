import assert from "node:assert/strict";
import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { describe, it } from "node:test";
import { create } from "@bufbuild/protobuf";
import { runSteps } from "../../src/agent/provisioning/step-runner.ts";
import { shippedPlansDir } from "../../src/controller/provisioning-plans.ts";
import { parsePlan } from "../../src/core/provisioning/provisioning-plan.ts";
import type { StepEvent } from "../../src/core/provisioning/provisioning-step.ts";
import { StepSpecSchema } from "../../src/gen/corral/v1/provisioning_pb.ts";
import { stepFromWire, stepToWire } from "../../src/wire/provisioning-steps.ts";

/** `root: true`: how a plan asks for root, and how a node may refuse it. */
describe("provisioning steps that ask for root", () => {
  it("a plan says root: true on an exec step or a waitFor exec condition, nowhere else", () => {
    const plan = parsePlan(
      `name: r
version: "1"
steps:
  - exec: [apt-get, update]
    root: true
  - exec: ["true"]
  - waitFor: { exec: [systemctl, is-active, x], timeout: 5s }
    root: true
`,
      "r.yaml",
    );
    const [a, b, c] = plan.steps;
    assert.equal(a?.kind === "exec" && a.exec.root, true);
    assert.equal(b?.kind === "exec" && b.exec.root, undefined);
    assert.equal(c?.kind === "waitFor" && c.waitFor.root, true);
    for (const step of plan.steps) {
      const back = stepFromWire(create(StepSpecSchema, stepToWire(step)), "step");
      assert.deepEqual(back, step, "root crosses the wire to the agent");
    }
    assert.throws(
      () =>
        parsePlan(
          'name: r\nversion: "1"\nsteps:\n  - file: { path: /tmp/x, content: "", mode: "0644" }\n    root: true\n',
          "r.yaml",
        ),
      /only an exec step or a waitFor exec condition runs a program as root/,
    );
  });

  it("the shipped plans ask for root where they install or change the host", async () => {
    const base = parsePlan(await readFile(join(shippedPlansDir, "base.yaml"), "utf8"), "base.yaml");
    const execs = base.steps.flatMap((s) => (s.kind === "exec" ? [s.exec] : []));
    assert.ok(execs.length > 0);
    assert.ok(
      execs.every((e) => e.root === true),
      "hostnamectl, timedatectl, apt-get run as root",
    );
  });

  it("a node started with --no-root-steps refuses them without running anything", async () => {
    const events: StepEvent[] = [];
    for await (const event of runSteps(
      [
        { name: "needs root", kind: "exec", exec: { argv: ["true"], root: true } },
        { name: "after", kind: "exec", exec: { argv: ["true"] } },
      ],
      { signal: AbortSignal.timeout(10_000), rootSteps: false },
    ))
      events.push(event);
    const ends = events.filter((e) => e.status !== "running");
    assert.deepEqual(
      ends.map((e) => e.status),
      ["failed", "skipped"],
    );
    assert.match(ends[0]?.message ?? "", /asks for root and this node refuses root steps/);
  });
});
