import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { describe, it } from "node:test";
import { fileURLToPath } from "node:url";
import {
  coreImpurities,
  describeEdge,
  folderCycles,
  type ImportEdge,
  importEdges,
  sourceFiles,
  violations,
} from "./layer-rules.ts";

const srcDir = fileURLToPath(new URL("../../src/", import.meta.url));

/**
 * Imports the architecture forbids that are still there (issue #18 takes them out). The list only
 * shrinks: a new forbidden import fails the test, and so does an entry that no longer exists.
 */
const knownDebts = new Set<string>([]);

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
      { from: "cli/commands/nodes-command.ts", to: "faces/node-relay.ts" },
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

describe("core is pure (issue #18: no timers, no clock behind the injected one, no environment, no I/O)", () => {
  it("no file under src/core/ reads the time, sets a timer, reads process.env or imports Node I/O", () => {
    const coreDir = join(srcDir, "core");
    const files = sourceFiles(coreDir);
    assert.ok(files.length > 30, `only ${files.length} core files read: the reader is broken`);
    const found = files.flatMap((file) =>
      coreImpurities(`core/${file}`, readFileSync(join(coreDir, file), "utf8")),
    );
    assert.deepEqual(found, [], "core must stay pure: inject a Clock, move timers and sleeps to an engine");
  });

  it("the check catches each kind of impurity, and lets computation and mentions in comments pass", () => {
    const planted = [
      "const t = Date.now();",
      "const t = new Date();",
      "const t = performance.now();",
      "setTimeout(() => undefined, 10);",
      "const h = setInterval(tick, 1000);",
      "globalThis.setImmediate(run);",
      'const level = process.env.CORRAL_LOG_LEVEL ?? "warn";',
      'import { setTimeout as sleep } from "node:timers/promises";',
      'import { readFile } from "node:fs/promises";',
      'import { createServer } from "node:net";',
      'import * as net from "node:net";',
      'const fs = await import("node:fs");',
    ];
    for (const line of planted)
      assert.equal(coreImpurities("core/planted.ts", line).length, 1, `not caught: ${line}`);
    const allowed = [
      'import { createHash, randomBytes } from "node:crypto";',
      'import { isAbsolute, posix } from "node:path";',
      'import { isIPv4, isIPv6 } from "node:net";',
      "// never Date.now() here: the clock is injected",
      'const text = "setTimeout and process.env are only words here";',
      "const at = new Date(clock.now()).toISOString();",
      "const now = options.clock.now();",
    ];
    for (const line of allowed) assert.deepEqual(coreImpurities("core/allowed.ts", line), [], line);
  });
});
