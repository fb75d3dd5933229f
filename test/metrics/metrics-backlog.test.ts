import assert from "node:assert/strict";
import { after, describe, it } from "node:test";
import { setTimeout as sleep } from "node:timers/promises";
import { MetricsService } from "../../src/gen/corral/v1/metrics_pb.ts";
import { eventually, joinWithToken, startTestAgent, type TestAgent } from "../helpers/agent.ts";
import { plaintextClient } from "../helpers/clients.ts";
import { startTestController, type TestController } from "../helpers/controller.ts";

describe("an agent that cannot reach its controller keeps its samples", () => {
  let controller: TestController | undefined;
  let agent: TestAgent | undefined;
  after(async () => {
    await agent?.close();
    await controller?.close();
  });

  it("sends what it sampled during the outage once the controller is back", async () => {
    const raw = { metrics: { interval: "200ms", historySamples: 1000 } };
    const first = await startTestController(raw, {}, undefined, false);
    controller = first;
    agent = await startTestAgent({ name: "backlog-a" });
    await joinWithToken(first, agent);
    const client = () => plaintextClient(MetricsService, controller?.bridgePort ?? 0);
    await eventually(async () => {
      const { samples } = await client().getNodeMetricsHistory({ nodeId: "backlog-a" });
      return samples.length > 0 ? true : undefined;
    });

    // The controller goes away; the agent goes on sampling every 200 ms.
    const down = Date.now();
    await first.controller.close();
    controller = undefined;
    await sleep(1_500);
    const up = Date.now();
    // Back on the same cluster port and data dir: the history (memory) starts empty.
    controller = await startTestController(
      { ...raw, http: { address: `127.0.0.1:${first.clusterPort}` } },
      {},
      first.dataDir,
      true,
    );
    const samples = await eventually(
      async () => {
        const { samples: kept } = await client().getNodeMetricsHistory({ nodeId: "backlog-a" });
        return kept.some((s) => s.timeUnixMs > down && s.timeUnixMs < up) ? kept : undefined;
      },
      30_000,
      "samples taken while the controller was away",
    );
    const during = samples.filter((s) => s.timeUnixMs > down && s.timeUnixMs < up);
    assert.ok(during.length >= 3, `${during.length} samples from the outage arrived`);
  });
});
