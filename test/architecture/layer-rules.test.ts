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
  // Engines still name three controller types instead of declaring what they need.
  "engines/last-seen-batcher.ts → controller/controller-registry.ts",
  "engines/provisioning-dispatcher.ts → controller/provisioning-plans.ts",
  "engines/provisioning-dispatcher.ts → controller/provisioning-runners.ts",
]);

describe("layer rules on src/ imports", () => {
  const edges = importEdges(srcDir);

  it("reads the imports of the whole tree", () => {
    assert.ok(edges.length > 1000, `only ${edges.length} imports read: the reader is broken`);
    assert.ok(edges.some((e) => e.from.startsWith("controller/") && e.to.startsWith("store/")));
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
      { from: "wire/corral-node.ts", to: "faces/corral/nodes-service.ts" },
      { from: "wire/corral-node.ts", to: "agent/agent.ts" },
      { from: "engines/membership.ts", to: "wire/corral-node.ts" },
      { from: "store/sqlite/sqlite-store.ts", to: "wire/corral-node.ts" },
    ];
    assert.equal(new Set(violations(planted).map(describeEdge)).size, planted.length);
    const allowed: ImportEdge[] = [
      { from: "core/nodes/node.ts", to: "base/errors.ts" },
      { from: "core/nodes/node-registry.ts", to: "store/store.ts" },
      { from: "cli/commands/up-command.ts", to: "agent/agent.ts" },
      { from: "controller/controller.ts", to: "faces/corral/nodes-service.ts" },
      { from: "core/nodes/node.ts", to: "defaults.ts" },
      { from: "wire/corral-node.ts", to: "core/nodes/node.ts" },
      { from: "wire/corral-node.ts", to: "gen/corral/v1/nodes_pb.ts" },
      { from: "faces/corral/nodes-service.ts", to: "wire/corral-node.ts" },
      { from: "agent/controller-link.ts", to: "wire/corral-node.ts" },
      { from: "controller/provisioning-runners.ts", to: "wire/provisioning-steps.ts" },
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
