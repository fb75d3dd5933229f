import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { fileURLToPath } from "node:url";
import { describeEdge, folderCycles, type ImportEdge, importEdges, violations } from "./layer-rules.ts";

const srcDir = fileURLToPath(new URL("../../src/", import.meta.url));

/**
 * Imports the architecture forbids that are still there (issue #18 takes them out). The list only
 * shrinks: a new forbidden import fails the test, and so does an entry that no longer exists.
 */
const knownDebts = new Set<string>([
  // Node-side services still live under faces/ and the agent mounts them (→ agent/services/).
  "agent/agent.ts → faces/cart-actor/agent-control-plane.ts",
  "agent/agent.ts → faces/corral/pipeline-runs-service.ts",
  "agent/agent.ts → faces/nanoping/logging-service.ts",
  "agent/agent.ts → faces/nanoping/pipelines-service.ts",
  "agent/controller-link.ts → faces/corral/node-message.ts",
  "agent/local-api/hub-client-service.ts → faces/nanoping/node-message.ts",
  "agent/node-agent/node-agent.ts → faces/corral/hardware-service.ts",
  "agent/pipelines/udp-target-resolver.ts → faces/corral/pipeline-udp-targets.ts",
  "faces/corral/hardware-service.ts → agent/hardware/hardware.ts",
  "faces/corral/hardware-service.ts → agent/hardware/pwm.ts",
  "faces/corral/hardware-service.ts → agent/hardware/sampler.ts",
  "faces/corral/hardware-service.ts → agent/node-agent/gpio/gpio-backend.ts",
  "faces/corral/provisioning-service.ts → agent/provisioning/step-wire.ts",
  "faces/nanoping/logging-service.ts → agent/node-agent/logs/log-source.ts",
  "faces/nanoping/logging-service.ts → agent/node-agent/logs/log-stream.ts",
  // The agent's log ring is shared by the controller's own node, pipelines and the CLI's log tee.
  "cli/commands/controller-command.ts → agent/node-agent/logs/ring-log-source.ts",
  "cli/commands/demo-command.ts → agent/node-agent/logs/ring-log-source.ts",
  "cli/commands/up-command.ts → agent/node-agent/logs/ring-log-source.ts",
  "pipelines/run.ts → agent/node-agent/logs/ring-log-source.ts",
]);

describe("layer rules on src/ imports", () => {
  const edges = importEdges(srcDir);

  it("reads the imports of the whole tree", () => {
    assert.ok(edges.length > 1000, `only ${edges.length} imports read: the reader is broken`);
    assert.ok(edges.some((e) => e.from === "controller/controller.ts" && e.to.startsWith("store/")));
  });

  it("no forbidden import beyond the known debts, and every debt listed is still there", () => {
    const found = violations(edges);
    const fresh = found.filter((v) => !knownDebts.has(describeEdge(v)));
    assert.deepEqual(
      fresh.map((v) => `${describeEdge(v)}  (${v.rule})`),
      [],
      "forbidden imports: move the code to the layer it belongs to",
    );
    const present = new Set(found.map(describeEdge));
    const paid = [...knownDebts].filter((debt) => !present.has(debt));
    assert.deepEqual(paid, [], "these debts are paid: take them off knownDebts");
  });

  it("no cycle between top-level folders once the known debts are set aside", () => {
    const rest = edges.filter((e) => !knownDebts.has(describeEdge(e)));
    assert.deepEqual(
      folderCycles(rest).map((c) => c.join(" → ")),
      [],
    );
  });

  it("the rules catch a forbidden arrow and a cycle", () => {
    const planted: ImportEdge[] = [
      { from: "core/node.ts", to: "agent/agent.ts" },
      { from: "store/sqlite/sqlite-store.ts", to: "core/node.ts" },
      { from: "faces/corral/nodes-service.ts", to: "agent/agent.ts" },
      { from: "agent/agent.ts", to: "controller/controller.ts" },
      { from: "tui/app.ts", to: "cli/main.ts" },
      { from: "cli/main.ts", to: "agent/controller-link.ts" },
      { from: "base/errors.ts", to: "core/node.ts" },
      { from: "pipelines/run.ts", to: "agent/agent.ts" },
    ];
    assert.equal(new Set(violations(planted).map(describeEdge)).size, planted.length);
    const allowed: ImportEdge[] = [
      { from: "core/node.ts", to: "base/errors.ts" },
      { from: "core/node-registry.ts", to: "store/store.ts" },
      { from: "cli/commands/up-command.ts", to: "agent/agent.ts" },
      { from: "controller/controller.ts", to: "faces/corral/nodes-service.ts" },
      { from: "core/node.ts", to: "defaults.ts" },
    ];
    assert.deepEqual(violations(allowed), []);
    assert.deepEqual(
      folderCycles([
        { from: "rpc/a.ts", to: "security/b.ts" },
        { from: "security/b.ts", to: "rpc/c.ts" },
      ]).map((c) => c.join(" → ")),
      ["rpc → security"],
    );
  });
});
