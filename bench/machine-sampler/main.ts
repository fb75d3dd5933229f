/**
 * The machine sampler: what a node's periodic readers cost when they share one sampler, against each
 * reader with a sampler of its own (how the node read its machine before there was one sampler), in one
 * run on this machine's real /proc.
 *
 * A round is one interval of a controller's node: the heartbeat-style load reader (`ownLoad`), the
 * metrics pusher's sample and the Distributed LLM load reader all ask at once, as they do when their
 * intervals meet. Between rounds a manual clock moves past the cache window, so every round reads the
 * machine afresh (as real intervals of seconds do). Shared and separate rounds alternate; the figures are
 * medians of CPU µs (user + system, this process) and wall µs per round, and the file reads per round.
 * Rounds are 25 ms apart in real time (not measured), so the CPU counters move between them.
 *
 *   npm run bench:machine [-- --quick]
 *
 * Results also go to .bench-out/machine-sampler.json.
 */

import { mkdirSync, writeFileSync } from "node:fs";
import { performance } from "node:perf_hooks";
import { setTimeout as sleep } from "node:timers/promises";
import { parseArgs } from "node:util";
import {
  createLoadReader,
  type MachinePart,
  MachineSampler,
} from "../../src/agent/machine/machine-sampler.ts";
import { createMetricsSampler } from "../../src/agent/metrics-pusher.ts";
import { ManualClock } from "../../src/base/clock.ts";

const { values: options } = parseArgs({
  options: { quick: { type: "boolean", default: false } },
  strict: true,
});
const rounds = options.quick === true ? 200 : 1_000;
const parts: MachinePart[] = ["cpuTimes", "memory", "loadAverage", "network", "temperature", "gpus"];

/** The three readers of one node, over one shared sampler or one sampler each. */
function node(shared: boolean) {
  const clock = new ManualClock();
  const make = () => new MachineSampler({ nvidiaSmi: false, vcgencmd: false, clock: () => clock.now() });
  const one = make();
  const machines = shared ? [one, one, one] : [make(), make(), make()];
  const [a, b, c] = machines as [MachineSampler, MachineSampler, MachineSampler];
  const heartbeat = createLoadReader({ machine: a, firstSampleMs: 1 });
  const pusher = createMetricsSampler({ machine: b, clock: () => clock.now() });
  const dllm = createLoadReader({ machine: c, firstSampleMs: 1 });
  const distinct = [...new Set(machines)];
  const reads = () => distinct.reduce((sum, m) => sum + parts.reduce((n, p) => n + m.measured(p), 0), 0);
  return {
    reads,
    round: async () => {
      clock.advance(5_000);
      await Promise.all([heartbeat(), pusher(), dllm()]);
    },
  };
}

const median = (values: number[]) => {
  const sorted = [...values].sort((x, y) => x - y);
  return sorted[sorted.length >> 1] ?? 0;
};

async function measure(target: ReturnType<typeof node>, count: number) {
  const cpu: number[] = [];
  const wall: number[] = [];
  const before = target.reads();
  for (let i = 0; i < count; i++) {
    // Real time passes between intervals too: /proc/stat moves (10 ms jiffies), so no reader has to
    // take a first sample over firstSampleMs.
    await sleep(25);
    const usage = process.cpuUsage();
    const start = performance.now();
    await target.round();
    wall.push((performance.now() - start) * 1000);
    const spent = process.cpuUsage(usage);
    cpu.push(spent.user + spent.system);
  }
  return { cpu, wall, reads: (target.reads() - before) / count };
}

const shared = node(true);
const separate = node(false);
// Warm-up: the first CPU reading of each reader samples over firstSampleMs.
await shared.round();
await separate.round();

const slices = 10;
const perSlice = Math.ceil(rounds / slices);
const results = {
  shared: { cpu: [] as number[], wall: [] as number[], reads: 0 },
  separate: { cpu: [] as number[], wall: [] as number[], reads: 0 },
};
for (let slice = 0; slice < slices; slice++) {
  for (const [name, target] of slice % 2 === 0
    ? ([
        ["shared", shared],
        ["separate", separate],
      ] as const)
    : ([
        ["separate", separate],
        ["shared", shared],
      ] as const)) {
    const got = await measure(target, perSlice);
    results[name].cpu.push(...got.cpu);
    results[name].wall.push(...got.wall);
    results[name].reads = got.reads;
  }
}

const line = (name: string, r: { cpu: number[]; wall: number[]; reads: number }) =>
  `${name.padEnd(34)} ${median(r.cpu).toFixed(0).padStart(6)} µs CPU  ${median(r.wall).toFixed(0).padStart(6)} µs wall  ${r.reads.toFixed(1).padStart(4)} reads/round`;
console.log(
  `machine sampler: ${rounds} rounds of 3 readers (load, metrics sample, load) on this machine's /proc`,
);
console.log(line("one shared sampler", results.shared));
console.log(line("baseline: a sampler per reader", results.separate));
console.log(
  `ratio shared/baseline: CPU ${(median(results.shared.cpu) / median(results.separate.cpu)).toFixed(2)}, ` +
    `wall ${(median(results.shared.wall) / median(results.separate.wall)).toFixed(2)}`,
);
mkdirSync(".bench-out", { recursive: true });
writeFileSync(
  ".bench-out/machine-sampler.json",
  JSON.stringify(
    {
      rounds,
      shared: {
        cpuUs: median(results.shared.cpu),
        wallUs: median(results.shared.wall),
        reads: results.shared.reads,
      },
      separate: {
        cpuUs: median(results.separate.cpu),
        wallUs: median(results.separate.wall),
        reads: results.separate.reads,
      },
    },
    null,
    2,
  ),
);
