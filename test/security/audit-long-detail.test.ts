import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { Code, ConnectError } from "@connectrpc/connect";
import { NodesService } from "../../src/gen/corral/v1/nodes_pb.ts";
import { storeLimits } from "../../src/store/limits.ts";
import { eventually } from "../helpers/agent.ts";
import { plaintextClient } from "../helpers/clients.ts";
import { startTestController, type TestController } from "../helpers/controller.ts";

/**
 * An audit entry is never lost to its own size. Requests with huge text are refused at the edge now,
 * so an error detail past the store's value limit can only come from inside (a handler quoting a big
 * document, a peer's answer); the audit log itself cuts every field rather than let the store drop it.
 */
describe("audit entries with a huge error detail", () => {
  let cluster: TestController;
  before(async () => {
    cluster = await startTestController();
  });
  after(() => cluster?.close());

  it("are written, with the detail truncated below the store's value limit", async () => {
    const audit = cluster.controller.context.audit;
    const marker = "audit-marker-";
    await audit.append({
      principal: "local",
      method: "/corral.v1.NodesService/RemoveNode",
      result: "NOT_FOUND",
      detail: marker + "x".repeat(storeLimits.maxValueBytes + 1_000),
    });
    const entry = (await audit.recent(50)).find((e) => e.detail?.startsWith(marker));
    assert.ok(entry !== undefined, "the entry is in the audit log");
    assert.equal(entry.result, "NOT_FOUND");
    assert.ok(entry.detail !== undefined && entry.detail.length < 10_000, "the detail was cut");
    assert.match(entry.detail, /more characters/);
  });

  it("a call refused at the edge for its size is audited too", async () => {
    const nodes = plaintextClient(NodesService, cluster.bridgePort);
    const error = await nodes
      .removeNode({ node: "n".repeat(storeLimits.maxValueBytes + 1_000) })
      .catch((e: unknown) => e);
    assert.ok(error instanceof ConnectError && error.code === Code.InvalidArgument, String(error));
    const entry = await eventually(
      async () =>
        (await cluster.controller.context.audit.recent(50)).find(
          (e) => e.method === "/corral.v1.NodesService/RemoveNode" && e.result === "INVALID_ARGUMENT",
        ),
      10_000,
      "the audit entry of the refused RemoveNode",
    );
    assert.equal(entry.principal, "local");
    assert.ok((entry.detail ?? "").length < 10_000);
  });
});
