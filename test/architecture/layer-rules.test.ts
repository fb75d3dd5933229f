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
  // Node-side services moved to agent/services/ but still borrow face helpers, and two faces reach into them.
  "agent/controller-link.ts → faces/corral/node-message.ts",
  "agent/local-api/hub-client-service.ts → faces/nanoping/node-message.ts",
  "agent/pipelines/udp-target-resolver.ts → faces/corral/pipeline-udp-targets.ts",
  "agent/services/cart-actor-control-plane.ts → faces/cart-actor/peer-caller.ts",
  "agent/services/pipeline-runs-service.ts → faces/face-context.ts",
  "agent/services/pipeline-runs-service.ts → faces/guard-handlers.ts",
  "agent/services/pipeline-runs-service.ts → faces/node-relay.ts",
  "faces/corral/devices-service.ts → agent/services/hardware-service.ts",
  "faces/corral/pipeline-udp-targets.ts → agent/services/pipeline-runs-service.ts",
  "faces/corral/provisioning-service.ts → agent/provisioning/step-wire.ts",
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
      { from: "core/nodes/node.ts", to: "agent/agent.ts" },
      { from: "engines/membership.ts", to: "controller/controller.ts" },
      { from: "store/sqlite/sqlite-store.ts", to: "core/nodes/node.ts" },
      { from: "faces/corral/nodes-service.ts", to: "agent/agent.ts" },
      { from: "agent/agent.ts", to: "controller/controller.ts" },
      { from: "tui/app.ts", to: "cli/main.ts" },
      { from: "cli/main.ts", to: "agent/controller-link.ts" },
      { from: "base/errors.ts", to: "core/nodes/node.ts" },
      { from: "pipelines/run.ts", to: "agent/agent.ts" },
    ];
    assert.equal(new Set(violations(planted).map(describeEdge)).size, planted.length);
    const allowed: ImportEdge[] = [
      { from: "core/nodes/node.ts", to: "base/errors.ts" },
      { from: "core/nodes/node-registry.ts", to: "store/store.ts" },
      { from: "cli/commands/up-command.ts", to: "agent/agent.ts" },
      { from: "controller/controller.ts", to: "faces/corral/nodes-service.ts" },
      { from: "core/nodes/node.ts", to: "defaults.ts" },
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
