import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { ConnectError } from "@connectrpc/connect";
import { NodesService } from "../../src/gen/corral/v1/nodes_pb.ts";
import { storeLimits } from "../../src/store/limits.ts";
import { eventually } from "../helpers/agent.ts";
import { plaintextClient } from "../helpers/clients.ts";
import { startTestController, type TestController } from "../helpers/controller.ts";

/**
 * An audit entry is never lost to its own size: a refused call whose error message repeats a
 * megabyte-long argument is audited with the message cut short, not dropped by the store's value limit.
 */
describe("audit entries with a huge error detail", () => {
  let cluster: TestController;
  before(async () => {
    cluster = await startTestController();
  });
  after(() => cluster?.close());

  it("are written, with the detail truncated below the store's value limit", async () => {
    const nodes = plaintextClient(NodesService, cluster.bridgePort);
    const marker = "audit-marker-";
    const huge = marker + "x".repeat(storeLimits.maxValueBytes + 1_000);
    // What the client hears is not this test's concern (a status message this long is another
    // matter); the call is bounded so that the test goes on to look at the audit log.
    const error = await nodes.removeNode({ node: huge }, { timeoutMs: 5_000 }).catch((e: unknown) => e);
    assert.ok(error instanceof ConnectError, "removing a node that does not exist fails");

    const entry = await eventually(
      async () =>
        (await cluster.controller.context.audit.recent(50)).find(
          (e) => e.method === "/corral.v1.NodesService/RemoveNode",
        ),
      10_000,
      "the audit entry of the refused RemoveNode",
    );
    assert.equal(entry.principal, "local");
    assert.notEqual(entry.result, "OK");
    assert.ok(entry.detail !== undefined, "the entry keeps the error's detail");
    assert.ok(entry.detail.includes(marker), "the start of the detail is kept");
    assert.ok(entry.detail.length < 10_000, `the detail was cut (${entry.detail.length} characters)`);
    assert.match(entry.detail, /more characters/);
  });
});
