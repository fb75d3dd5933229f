import assert from "node:assert/strict";
import { mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { createMetricsSampler, parseGpuMetricsCsv } from "../../src/agent/metrics-pusher.ts";

/** A /proc the test writes: counters it moves between two samples. */
async function writeProc(dir: string, counters: { rx: number; tx: number; busy: number; idle: number }) {
  await writeFile(
    join(dir, "meminfo"),
    "MemTotal:       4000000 kB\nMemFree:        1000000 kB\nMemAvailable:   3000000 kB\nSwapTotal: 0 kB\nSwapFree: 0 kB\n",
  );
  await writeFile(
    join(dir, "net", "dev"),
    "Inter-|   Receive                                                |  Transmit\n" +
      " face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs drop fifo colls carrier compressed\n" +
      `    lo: 999999 10 0 0 0 0 0 0 999999 10 0 0 0 0 0 0\n` +
      `  eth0: ${counters.rx} 10 0 0 0 0 0 0 ${counters.tx} 10 0 0 0 0 0 0\n`,
  );
  await writeFile(join(dir, "loadavg"), "0.52 0.58 0.59 2/1234 5678\n");
  await writeFile(join(dir, "stat"), `cpu  ${counters.busy} 0 0 ${counters.idle} 0 0 0 0 0 0\n`);
}

describe("the agent's metrics sampler", () => {
  let dir: string;
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), "corral-proc-"));
    await mkdir(join(dir, "net"));
  });
  after(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it("reads memory, load, CPU and network rates (loopback left out) from /proc", async () => {
    let now = 1_000_000;
    const sample = createMetricsSampler({ procDir: dir, sysDir: dir, nvidiaSmi: false, clock: () => now });
    await writeProc(dir, { rx: 1_000, tx: 5_000, busy: 100, idle: 900 });
    const first = await sample();
    assert.equal(first.memoryTotalBytes, 4_000_000 * 1024);
    assert.equal(first.memoryUsedBytes, 1_000_000 * 1024);
    assert.deepEqual([first.load1, first.load5, first.load15], [0.52, 0.58, 0.59]);
    assert.equal(first.networkRxBytesPerSecond, 0, "no rate before a second sample");
    assert.equal(first.temperatureCelsius, undefined, "no thermal zone here");
    assert.deepEqual(first.gpus, []);

    now += 2_000;
    await writeProc(dir, { rx: 21_000, tx: 9_000, busy: 400, idle: 1_000 });
    const second = await sample();
    assert.equal(second.timeUnixMs, now);
    assert.equal(second.networkRxBytesPerSecond, 10_000);
    assert.equal(second.networkTxBytesPerSecond, 2_000);
    assert.equal(second.cpuPercent, 75, "300 busy of 400 jiffies");
  });

  it("parses nvidia-smi's per-GPU figures", () => {
    const gpus = parseGpuMetricsCsv(
      "GPU-aaa, NVIDIA H100 80GB HBM3, 37, 1024, 81559, 41\nGPU-bbb, Tesla, with, commas, [N/A], 10, 20, [N/A]\nnot a gpu line\n",
    );
    assert.deepEqual(gpus, [
      {
        uuid: "GPU-aaa",
        name: "NVIDIA H100 80GB HBM3",
        utilizationPercent: 37,
        memoryUsedBytes: 1024 * 1024 * 1024,
        memoryTotalBytes: 81559 * 1024 * 1024,
        temperatureCelsius: 41,
      },
      {
        uuid: "GPU-bbb",
        name: "Tesla, with, commas",
        utilizationPercent: 0,
        memoryUsedBytes: 10 * 1024 * 1024,
        memoryTotalBytes: 20 * 1024 * 1024,
      },
    ]);
  });
});
