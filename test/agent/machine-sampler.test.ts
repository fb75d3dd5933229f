import assert from "node:assert/strict";
import { mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import type { FsUsageEntry } from "../../src/agent/machine/file-systems.ts";
import { createLoadReader, MachineSampler } from "../../src/agent/machine/machine-sampler.ts";
import { createSystemMetricsReader } from "../../src/agent/machine/system-metrics-reader.ts";
import { readSystemResources } from "../../src/agent/machine/system-resources.ts";
import { createMetricsSampler } from "../../src/agent/metrics-pusher.ts";
import { ManualClock } from "../../src/base/clock.ts";

/** A /proc the test writes, so every figure is known and moves only when the test moves it. */
async function writeProc(dir: string, cpu: { busy: number; idle: number }, memAvailableKb = 3_000_000) {
  await writeFile(
    join(dir, "meminfo"),
    `MemTotal:       4000000 kB\nMemFree:        1000000 kB\nMemAvailable:   ${memAvailableKb} kB\nSwapTotal: 0 kB\nSwapFree: 0 kB\n`,
  );
  await writeFile(join(dir, "stat"), `cpu  ${cpu.busy} 0 0 ${cpu.idle} 0 0 0 0 0 0\n`);
  await writeFile(join(dir, "loadavg"), "0.52 0.58 0.59 2/1234 5678\n");
  await writeFile(join(dir, "uptime"), "1000.5 10.0\n");
  await writeFile(
    join(dir, "net", "dev"),
    "Inter-|   Receive |  Transmit\n face |bytes packets|bytes packets\n" +
      "  eth0: 1000 10 0 0 0 0 0 0 2000 10 0 0 0 0 0 0\n",
  );
}

describe("the machine sampler", () => {
  let dir: string;
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), "corral-machine-"));
    await mkdir(join(dir, "net"));
  });
  after(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  /** A sampler over the test's /proc, a counting file system listing and a manual clock. */
  function sampler(clock: ManualClock) {
    let listings = 0;
    const listFileSystems = async (): Promise<FsUsageEntry[]> => {
      listings++;
      return [{ fs: "/dev/sda1", type: "ext4", size: 2000, used: 500, mount: dir }];
    };
    const machine = new MachineSampler({
      procDir: dir,
      sysDir: dir,
      vcgencmd: false,
      nvidiaSmi: false,
      listFileSystems,
      maxAgeMs: 1_000,
      clock: () => clock.now(),
    });
    return { machine, listings: () => listings };
  }

  it("readers that ask within the cache window share one reading; after it, the machine is read again", async () => {
    await writeProc(dir, { busy: 100, idle: 900 });
    const clock = new ManualClock();
    const { machine, listings } = sampler(clock);
    const pushed = createMetricsSampler({ machine, clock: () => clock.now() });
    const load = createLoadReader({ machine, firstSampleMs: 1 });

    const [point, heartbeat, resources] = await Promise.all([
      pushed(),
      load(),
      readSystemResources({ machine, gpu: { command: "/nonexistent/nvidia-smi" } }),
    ]);
    assert.equal(machine.measured("memory"), 1, "one read of /proc/meminfo for the pusher and the heartbeat");
    assert.equal(point.memoryUsedBytes, 1_000_000 * 1024);
    assert.equal(heartbeat.memoryUsedMb, Math.round((1_000_000 * 1024) / (1024 * 1024)));
    assert.deepEqual(resources.disks, [{ mount: dir, sizeBytes: 2000 }]);

    // Within the window a changed /proc is not seen: the readers get the shared reading.
    await writeProc(dir, { busy: 100, idle: 900 }, 2_000_000);
    clock.advance(500);
    assert.equal((await pushed()).memoryUsedBytes, 1_000_000 * 1024);
    assert.equal((await load()).memoryUsedMb, Math.round((1_000_000 * 1024) / (1024 * 1024)));
    assert.equal(machine.measured("memory"), 1);
    await readSystemResources({ machine, gpu: { command: "/nonexistent/nvidia-smi" } });
    assert.equal(listings(), 1, "one file system listing for both readings of the node's resources");

    // Past it, the next reader reads the machine again, and the others share that reading.
    clock.advance(600);
    assert.equal((await pushed()).memoryUsedBytes, 2_000_000 * 1024);
    assert.equal((await load()).memoryUsedMb, Math.round((2_000_000 * 1024) / (1024 * 1024)));
    assert.equal(machine.measured("memory"), 2);
  });

  it("a NodeAgent reading measures the machine now, and heartbeats then share it", async () => {
    await writeProc(dir, { busy: 100, idle: 900 });
    const clock = new ManualClock();
    const { machine, listings } = sampler(clock);
    const metrics = createSystemMetricsReader({ machine, firstSampleMs: 1 });
    const load = createLoadReader({ machine, firstSampleMs: 1 });
    const [heartbeat, sample] = await Promise.all([load(), metrics()]);
    assert.equal(heartbeat.memoryUsedMb, Math.round((1_000_000 * 1024) / (1024 * 1024)));
    assert.equal(sample.memoryUsedBytes, 1_000_000 * 1024);
    assert.deepEqual(sample.disks, [
      { mount: dir, filesystem: "/dev/sda1", totalBytes: 2000, usedBytes: 500, usage: 25 },
    ]);

    await writeProc(dir, { busy: 100, idle: 900 }, 2_000_000);
    clock.advance(100);
    assert.equal(
      (await metrics()).memoryUsedBytes,
      2_000_000 * 1024,
      "a call is answered with a reading of now",
    );
    const reads = machine.measured("memory");
    assert.equal((await load()).memoryUsedMb, Math.round((2_000_000 * 1024) / (1024 * 1024)));
    assert.equal(machine.measured("memory"), reads, "the heartbeat took the NodeAgent's reading");
    assert.equal(listings(), 2);
  });

  it("CPU percent comes from two /proc/stat snapshots, each reader over its own interval", async () => {
    await writeProc(dir, { busy: 100, idle: 900 });
    const clock = new ManualClock();
    const { machine } = sampler(clock);
    const heartbeat = machine.cpuMeter({ firstSampleMs: 1 });
    const pusher = machine.cpuMeter({ firstSampleMs: 1 });
    // First calls: a frozen /proc/stat shows no CPU time over the first sample.
    assert.equal(await heartbeat(), 0);
    assert.equal(await pusher(), 0);

    clock.advance(5_000);
    await writeProc(dir, { busy: 400, idle: 1_000 });
    assert.equal(await heartbeat(), 75, "300 busy of 400 jiffies since the heartbeat's last reading");

    clock.advance(5_000);
    await writeProc(dir, { busy: 500, idle: 1_300 });
    assert.equal(await heartbeat(), 25, "100 busy of 400 since the heartbeat's last reading");
    const reads = machine.measured("cpuTimes");
    assert.equal(await pusher(), 50, "400 busy of 800 since the pusher's last reading");
    assert.equal(machine.measured("cpuTimes"), reads, "the pusher used the heartbeat's snapshot");
  });

  it("a reader that has had the cached counters reads them afresh instead of reporting no time", async () => {
    await writeProc(dir, { busy: 100, idle: 900 });
    const clock = new ManualClock();
    const { machine } = sampler(clock);
    const meter = machine.cpuMeter({ firstSampleMs: 1 });
    await meter();
    await writeProc(dir, { busy: 150, idle: 950 });
    // No clock movement: the cached snapshot is the one this meter already used.
    assert.equal(await meter(), 50);
  });
});
