import assert from "node:assert/strict";
import { chmod, mkdir, mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { after, before, describe, it } from "node:test";
import { disksFromFsSize, type FsUsageEntry } from "../../../src/agent/machine/file-systems.ts";
import { createCpuSampler } from "../../../src/agent/machine/machine-sampler.ts";
import {
  cpuUsageBetween,
  createTemperatureReader,
  memoryFromMeminfo,
  parseLoadavg,
  parseMeminfo,
  parseNetDev,
  parseProcStat,
  parseUptime,
  parseVcgencmdTemp,
  temperatureFromZones,
} from "../../../src/agent/machine/system-metrics.ts";
import { createSystemMetricsReader } from "../../../src/agent/machine/system-metrics-reader.ts";

// Captured from a Debian 12 VM (24 GiB, no swap).
const meminfo = `MemTotal:       24684084 kB
MemFree:        23498052 kB
MemAvailable:   23943304 kB
Buffers:            9176 kB
Cached:           621772 kB
SwapCached:            0 kB
Active(anon):       1576 kB
SwapTotal:             0 kB
SwapFree:              0 kB
HugePages_Total:       0
Hugepagesize:       2048 kB
`;

// A Raspberry Pi 4 with swap, in the same layout.
const meminfoPi = `MemTotal:        3885396 kB
MemFree:          180476 kB
MemAvailable:     972304 kB
Buffers:           60132 kB
Cached:           905120 kB
SwapTotal:        102396 kB
SwapFree:          51200 kB
`;

const netDev = `Inter-|   Receive                                                |  Transmit
 face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs drop fifo colls carrier compressed
    lo: 4715624936 18401981    0    0    0     0          0         0 4715624936 18401981    0    0    0     0       0          0
  ifb0:       0       0    0    0    0     0          0         0        0       0    0    0    0     0       0          0
  eth0: 370948460   11947    0    0    0     0          0         0   943202    8450    0    0    0     0       0          0
wlan0:123456789012 99 0 0 0 0 0 0 42 7 0 0 0 0 0 0
`;

const procStat = `cpu  377023 0 50310 324900 588 0 5689 366 0 0
cpu0 189757 0 24704 161797 152 0 2914 172 0 0
cpu1 187266 0 25606 163103 436 0 2775 194 0 0
intr 12345 0 0
ctxt 999
`;

describe("parsers", () => {
  it("parseMeminfo: kB lines become bytes, bare numbers stay", () => {
    const info = parseMeminfo(meminfo);
    assert.equal(info.get("MemTotal"), 24684084 * 1024);
    assert.equal(info.get("Active(anon)"), 1576 * 1024);
    assert.equal(info.get("HugePages_Total"), 0);
    assert.equal(info.get("Hugepagesize"), 2048 * 1024);
  });

  it("memoryFromMeminfo: used = MemTotal − MemAvailable; swap used = total − free", () => {
    const vm = memoryFromMeminfo(parseMeminfo(meminfo));
    assert.equal(vm?.totalBytes, 24684084 * 1024);
    assert.equal(vm?.usedBytes, (24684084 - 23943304) * 1024);
    assert.ok(Math.abs((vm?.usage ?? 0) - ((24684084 - 23943304) / 24684084) * 100) < 1e-9);
    assert.equal(vm?.swapTotalBytes, 0);
    assert.equal(vm?.swapUsedBytes, 0);
    const pi = memoryFromMeminfo(parseMeminfo(meminfoPi));
    assert.equal(pi?.usedBytes, (3885396 - 972304) * 1024);
    assert.equal(pi?.swapTotalBytes, 102396 * 1024);
    assert.equal(pi?.swapUsedBytes, (102396 - 51200) * 1024);
  });

  it("memoryFromMeminfo: an old kernel without MemAvailable uses MemFree + Buffers + Cached", () => {
    const old = memoryFromMeminfo(
      parseMeminfo("MemTotal: 1000 kB\nMemFree: 100 kB\nBuffers: 50 kB\nCached: 250 kB\n"),
    );
    assert.equal(old?.usedBytes, 600 * 1024);
    assert.equal(memoryFromMeminfo(parseMeminfo("garbage\n")), undefined);
  });

  it("parseProcStat: the aggregate cpu line, idle + iowait as idle, guest not double counted", () => {
    const times = parseProcStat(procStat);
    const idle = 324900 + 588;
    const total = 377023 + 0 + 50310 + 324900 + 588 + 0 + 5689 + 366;
    assert.deepEqual(times, { busy: total - idle, total });
    assert.equal(parseProcStat("intr 1 2 3\n"), undefined);
    assert.deepEqual(parseProcStat("cpu 10 0 10 80\n"), { busy: 20, total: 100 }, "old kernels: 4 fields");
  });

  it("cpuUsageBetween: busy share of the interval, clamped to 0..100", () => {
    assert.equal(cpuUsageBetween({ busy: 100, total: 1000 }, { busy: 150, total: 1200 }), 25);
    assert.equal(cpuUsageBetween({ busy: 100, total: 1000 }, { busy: 100, total: 1000 }), 0);
    assert.equal(cpuUsageBetween({ busy: 0, total: 0 }, { busy: 500, total: 100 }), 100);
  });

  it("parseNetDev: every interface with bytes and packets both ways, names touching numbers", () => {
    assert.deepEqual(parseNetDev(netDev), [
      { name: "lo", rxBytes: 4715624936, rxPackets: 18401981, txBytes: 4715624936, txPackets: 18401981 },
      { name: "ifb0", rxBytes: 0, rxPackets: 0, txBytes: 0, txPackets: 0 },
      { name: "eth0", rxBytes: 370948460, rxPackets: 11947, txBytes: 943202, txPackets: 8450 },
      { name: "wlan0", rxBytes: 123456789012, rxPackets: 99, txBytes: 42, txPackets: 7 },
    ]);
  });

  it("parseLoadavg and parseUptime", () => {
    assert.deepEqual(parseLoadavg("4.42 3.65 3.61 4/154 24104\n"), {
      load1: 4.42,
      load5: 3.65,
      load15: 3.61,
    });
    assert.equal(parseLoadavg("x"), undefined);
    assert.equal(parseUptime("3832.98 3249.00\n"), 3832);
    assert.equal(parseUptime(""), undefined);
  });

  it("temperatureFromZones: the hottest CPU zone, else the hottest zone; millidegrees; junk skipped", () => {
    assert.equal(
      temperatureFromZones([
        { type: "acpitz\n", temp: "27800\n" },
        { type: "x86_pkg_temp\n", temp: "52000\n" },
        { type: "iwlwifi_1\n", temp: "61000\n" },
      ]),
      52,
      "a CPU zone wins over a hotter wifi card",
    );
    assert.equal(temperatureFromZones([{ type: "cpu-thermal\n", temp: "47236\n" }]), 47.236, "Raspberry Pi");
    assert.equal(
      temperatureFromZones([
        { type: "acpitz", temp: "27800" },
        { type: "pch_skylake", temp: "41500" },
      ]),
      41.5,
      "no CPU zone: the hottest",
    );
    assert.equal(
      temperatureFromZones([
        { type: "cpu-thermal", temp: "" },
        { type: "bogus", temp: "-274000" },
        { type: "bogus2", temp: "abc" },
      ]),
      undefined,
    );
    assert.equal(temperatureFromZones([]), undefined);
  });

  it("parseVcgencmdTemp", () => {
    assert.equal(parseVcgencmdTemp("temp=47.2'C\n"), 47.2);
    assert.equal(parseVcgencmdTemp("temp=60'C"), 60);
    assert.equal(parseVcgencmdTemp('error=1 error_msg="Command not registered"'), undefined);
  });

  it("disksFromFsSize: real file systems only, with used bytes and percent", () => {
    const entries: FsUsageEntry[] = [
      { fs: "/dev/sda1", type: "ext4", size: 1000, used: 250, mount: "/" },
      { fs: "tmpfs", type: "tmpfs", size: 500, used: 1, mount: "/run" },
      { fs: "/dev/sdb1", type: "xfs", size: 4000, used: 4000, mount: "/data" },
      { fs: "/dev/sda1", type: "ext4", size: 1000, used: 250, mount: "/var/lib/docker" },
    ];
    assert.deepEqual(disksFromFsSize(entries), [
      { mount: "/", filesystem: "/dev/sda1", totalBytes: 1000, usedBytes: 250, usage: 25 },
      { mount: "/data", filesystem: "/dev/sdb1", totalBytes: 4000, usedBytes: 4000, usage: 100 },
    ]);
  });
});

describe("readers", () => {
  let root: string;
  before(async () => {
    root = await mkdtemp(path.join(os.tmpdir(), "corral-metrics-"));
  });
  after(async () => {
    await rm(root, { recursive: true, force: true });
  });

  /** A fake /proc and /sys. */
  async function fixture(name: string, zones: Array<{ type: string; temp: string }>) {
    const proc = path.join(root, name, "proc");
    const sys = path.join(root, name, "sys");
    await mkdir(path.join(proc, "net"), { recursive: true });
    await writeFile(path.join(proc, "meminfo"), meminfoPi);
    await writeFile(path.join(proc, "stat"), "cpu 100 0 100 800 0 0 0 0 0 0\n");
    await writeFile(path.join(proc, "net", "dev"), netDev);
    await writeFile(path.join(proc, "loadavg"), "0.50 0.25 0.10 1/100 42\n");
    await writeFile(path.join(proc, "uptime"), "86400.5 1000.0\n");
    for (const [index, zone] of zones.entries()) {
      const dir = path.join(sys, "class", "thermal", `thermal_zone${index}`);
      await mkdir(dir, { recursive: true });
      await writeFile(path.join(dir, "type"), `${zone.type}\n`);
      await writeFile(path.join(dir, "temp"), `${zone.temp}\n`);
    }
    return { proc, sys };
  }

  it("reads every figure from the given /proc and /sys", async () => {
    const { proc, sys } = await fixture("pi", [{ type: "cpu-thermal", temp: "55125" }]);
    const read = createSystemMetricsReader({
      procDir: proc,
      sysDir: sys,
      vcgencmd: false,
      firstSampleMs: 1,
      listFileSystems: async () => [
        { fs: "/dev/mmcblk0p2", type: "ext4", size: 2000, used: 500, mount: "/" },
      ],
    });
    const sample = await read();
    assert.equal(sample.memoryTotalBytes, 3885396 * 1024);
    assert.equal(sample.memoryUsedBytes, (3885396 - 972304) * 1024);
    assert.equal(sample.swapUsedBytes, (102396 - 51200) * 1024);
    assert.deepEqual(sample.load, { load1: 0.5, load5: 0.25, load15: 0.1 });
    assert.equal(sample.uptimeSeconds, 86400);
    assert.equal(sample.temperatureCelsius, 55.125);
    assert.equal(sample.network.length, 4);
    assert.deepEqual(sample.disks, [
      { mount: "/", filesystem: "/dev/mmcblk0p2", totalBytes: 2000, usedBytes: 500, usage: 25 },
    ]);
    assert.equal(sample.cpuUsage, 0, "a frozen /proc/stat shows no CPU time");
    assert.equal(sample.hostname, os.hostname());
    assert.equal(sample.cpuCount, os.cpus().length);
    assert.ok(Math.abs(sample.timestamp - Date.now()) < 5_000);

    // The next call measures the interval since this one.
    await writeFile(path.join(proc, "stat"), "cpu 130 0 130 840 0 0 0 0 0 0\n");
    assert.equal((await read()).cpuUsage, 60);
  });

  it("a board without thermal zones asks vcgencmd; without either the temperature is left out", async () => {
    const { proc, sys } = await fixture("novc", []);
    const fake = path.join(root, "vcgencmd");
    await writeFile(fake, '#!/bin/sh\n[ "$1" = measure_temp ] && echo "temp=61.3\'C"\n');
    await chmod(fake, 0o755);
    assert.equal(await createTemperatureReader({ sysDir: sys, vcgencmd: fake })(), 61.3);
    assert.equal(await createTemperatureReader({ sysDir: sys, vcgencmd: false })(), undefined);
    const hang = path.join(root, "vcgencmd-hang");
    await writeFile(hang, "#!/bin/sh\nexec sleep 30\n");
    await chmod(hang, 0o755);
    const started = Date.now();
    assert.equal(
      await createTemperatureReader({ sysDir: sys, vcgencmd: hang, vcgencmdTimeoutMs: 200 })(),
      undefined,
    );
    assert.ok(Date.now() - started < 5_000, "vcgencmd is killed at its timeout");
    const sample = await createSystemMetricsReader({
      procDir: proc,
      sysDir: sys,
      vcgencmd: false,
      firstSampleMs: 1,
      listFileSystems: async () => [],
    })();
    assert.equal(sample.temperatureCelsius, undefined);
  });

  it("a file system listing that hangs gives no disks after the timeout, with a warning", async () => {
    const { proc, sys } = await fixture("hang", []);
    const warnings: string[] = [];
    let release: () => void = () => {};
    const sample = await createSystemMetricsReader({
      procDir: proc,
      sysDir: sys,
      vcgencmd: false,
      firstSampleMs: 1,
      diskTimeoutMs: 100,
      onWarning: (message) => warnings.push(message),
      listFileSystems: () =>
        new Promise<FsUsageEntry[]>((resolve) => {
          release = () => resolve([]);
        }),
    })();
    release();
    assert.deepEqual(sample.disks, []);
    assert.match(warnings.join("\n"), /longer than 100 ms/);
  });

  it("the CPU sampler: first call samples briefly, then each call covers the time since the last", async () => {
    const sample = createCpuSampler({ firstSampleMs: 20 });
    const first = await sample();
    assert.ok(first >= 0 && first <= 100, `cpu ${first}`);
    // Burn some CPU so the next interval has busy time.
    const until = Date.now() + 50;
    while (Date.now() < until) Math.sqrt(Math.random());
    const second = await sample();
    assert.ok(second > 0 && second <= 100, `cpu ${second}`);
  });

  it("this machine: memory total is /proc/meminfo's MemTotal × 1024, cpu 0..100, disks and network seen", async (t) => {
    let text: string;
    try {
      text = await readFile("/proc/meminfo", "utf8");
    } catch {
      t.skip("no /proc/meminfo here");
      return;
    }
    const total = Number(/^MemTotal:\s+(\d+) kB/m.exec(text)?.[1]);
    const sample = await createSystemMetricsReader()();
    assert.equal(sample.memoryTotalBytes, total * 1024);
    assert.ok(sample.cpuUsage >= 0 && sample.cpuUsage <= 100);
    assert.ok(sample.memoryUsage > 0 && sample.memoryUsage < 100);
    assert.ok(sample.network.some((nic) => nic.name === "lo"));
    assert.ok(sample.uptimeSeconds > 0);
    assert.ok(sample.cpuCount >= 1);
  });
});
