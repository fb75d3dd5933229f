import assert from "node:assert/strict";
import { test } from "node:test";
import { CorralError } from "../../src/base/errors.ts";
import { parsePipelineConfig } from "../../src/pipelines/config.ts";
import { guideConfig } from "./fixtures.ts";

const invalid = (json: string, path: RegExp) =>
  assert.throws(
    () => parsePipelineConfig(json),
    (error: unknown) =>
      error instanceof CorralError && error.code === "INVALID_ARGUMENT" && path.test(error.message),
  );

test("the guide's config parses into two blocks and one link", () => {
  const parsed = parsePipelineConfig(guideConfig);
  assert.equal(parsed.compatible, true);
  if (!parsed.compatible) return;
  assert.deepEqual(parsed.graph.blocks.map((b) => b.settings.type).sort(), [
    "traffic_sink",
    "uniform_traffic_source",
  ]);
  assert.equal(parsed.graph.links.length, 1);
  assert.deepEqual(parsed.graph.links[0]?.from, { instance: "uniform_traffic_source-1", port: 0 });
});

test("a newer version is incompatible, not an error", () => {
  const parsed = parsePipelineConfig(JSON.stringify({ version: 99, plumr_config: { whatever: 1 } }));
  assert.deepEqual(parsed, { compatible: false, version: 99 });
});

test("malformed configs are INVALID_ARGUMENT naming the JSON path", () => {
  invalid(guideConfig.slice(0, 40), /^json_config: is not valid JSON/);
  const config = JSON.parse(guideConfig);
  config.plumr_config.pipeline["x-1"] = { warp_drive: {} };
  invalid(JSON.stringify(config), /json_config\.plumr_config\.pipeline\.x-1\.warp_drive: unknown block type/);
  const dangling = JSON.parse(guideConfig);
  dangling.plumr_config.pipeline["traffic_sink-1"].traffic_sink.input =
    "[traffic_sink-1|in:0]-[nope-1|out:0]";
  invalid(JSON.stringify(dangling), /traffic_sink-1\.traffic_sink\.input: no block "nope-1"/);
  const port = JSON.parse(guideConfig);
  port.plumr_config.pipeline["traffic_sink-1"].traffic_sink.input =
    "[traffic_sink-1|in:0]-[uniform_traffic_source-1|out:7]";
  invalid(JSON.stringify(port), /traffic_sink-1\.traffic_sink\.input: .*no output port 7/);
  const setting = JSON.parse(guideConfig);
  setting.plumr_config.pipeline["uniform_traffic_source-1"].uniform_traffic_source.total_packets = -1;
  invalid(JSON.stringify(setting), /uniform_traffic_source\.total_packets: must be between/);
  invalid(" ".repeat(10 * 1024 * 1024), /^json_config: is larger than/);
});

test("udp_receiver and udp_sender: defaults, targets, and their mistakes named by path", () => {
  const rx = (settings: Record<string, unknown>) =>
    JSON.stringify({
      version: 13,
      plumr_config: {
        pipeline: {
          rx: { udp_receiver: { output: "[sink|in:0]-[rx|out:0]", ...settings } },
          sink: { traffic_sink: { input: "[sink|in:0]-[rx|out:0]" } },
        },
      },
    });
  const parsed = parsePipelineConfig(rx({}));
  assert.ok(parsed.compatible);
  assert.deepEqual(parsed.graph.blocks[0]?.settings, {
    type: "udp_receiver",
    output: "[sink|in:0]-[rx|out:0]",
    bind: "0.0.0.0",
    port: 0,
  });
  invalid(rx({ port: 70_000 }), /pipeline\.rx\.udp_receiver\.port: must be between 0 and 65535/);

  const tx = (target: unknown) =>
    JSON.stringify({
      version: 13,
      plumr_config: {
        pipeline: {
          src: { uniform_traffic_source: { output: "[tx|in:0]-[src|out:0]", total_packets: 1 } },
          tx: { udp_sender: { input: "[tx|in:0]-[src|out:0]", target } },
        },
      },
    });
  const byName = parsePipelineConfig(tx({ node: "b", pipeline: "rx", block: "rx" }));
  assert.ok(byName.compatible);
  const sender = byName.graph.blocks[1]?.settings;
  assert.equal(sender?.type, "udp_sender");
  assert.deepEqual(sender.type === "udp_sender" ? sender.target : undefined, {
    node: "b",
    pipeline: "rx",
    block: "rx",
  });
  const fixed = parsePipelineConfig(tx({ host: "127.0.0.1", port: 9000 }));
  assert.ok(fixed.compatible);
  invalid(
    tx("b/rx/rx"),
    /pipeline\.tx\.udp_sender\.target: must be \{node, pipeline, block\} or \{host, port\}/,
  );
  invalid(tx({ node: "b", pipeline: "rx" }), /udp_sender\.target\.block: must be a non-empty string/);
  invalid(tx({ host: "h", port: 0 }), /udp_sender\.target\.port: must be between 1 and 65535/);
  invalid(
    tx({ node: "b", pipeline: "rx", block: "rx", port: 1 }),
    /udp_sender\.target\.node: unknown setting \(allowed: host, port\)/,
  );
});
