import assert from "node:assert/strict";
import { existsSync } from "node:fs";
import { chmod, mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { after, before, describe, it } from "node:test";
import { type FsEntry, selectDisks } from "../../src/agent/machine/file-systems.ts";
import { discoverGpus, nvidiaSmiArgs, parseNvidiaSmiCsv } from "../../src/agent/machine/gpu-discovery.ts";
import { createLoadReader } from "../../src/agent/machine/machine-sampler.ts";
import { readSystemResources } from "../../src/agent/machine/system-resources.ts";
import { maxLayersFor } from "../../src/core/nodes/node-capacity.ts";

const h100 = "NVIDIA H100 80GB HBM3, 81559, GPU-5d3c8a1e-2b4f-4c6d-9e8f-0a1b2c3d4e5f";
const a100 = "NVIDIA A100-SXM4-40GB, 40960, GPU-0f1e2d3c-4b5a-6978-8a9b-ccddeeff0011";

describe("parseNvidiaSmiCsv", () => {
  it("reads realistic nvidia-smi output, one GPU a line", () => {
    assert.deepEqual(parseNvidiaSmiCsv(`${h100}\n${a100}\n`), [
      { name: "NVIDIA H100 80GB HBM3", memoryMb: 81559, uuid: "GPU-5d3c8a1e-2b4f-4c6d-9e8f-0a1b2c3d4e5f" },
      { name: "NVIDIA A100-SXM4-40GB", memoryMb: 40960, uuid: "GPU-0f1e2d3c-4b5a-6978-8a9b-ccddeeff0011" },
    ]);
  });

  it("keeps commas inside a name (nvidia-smi quotes nothing) and tolerates CRLF and padding", () => {
    assert.deepEqual(parseNvidiaSmiCsv("  Odd, Name, Inc GPU ,  1024 , GPU-abc-123 \r\n"), [
      { name: "Odd, Name, Inc GPU", memoryMb: 1024, uuid: "GPU-abc-123" },
    ]);
  });

  it("ignores blank lines, headers, garbage and repeated uuids", () => {
    const text = [
      "",
      "name, memory.total [MiB], uuid",
      "No devices were found",
      "garbage",
      "a,b",
      "Tesla T4, lots, GPU-1111",
      ", 1024, GPU-2222",
      "Tesla T4, 15360, not-a-uuid",
      h100,
      h100,
      "   ",
    ].join("\n");
    assert.deepEqual(
      parseNvidiaSmiCsv(text).map((gpu) => gpu.uuid),
      ["GPU-5d3c8a1e-2b4f-4c6d-9e8f-0a1b2c3d4e5f"],
    );
  });

  it("keeps a GPU whose memory nvidia-smi cannot tell, with 0 MiB", () => {
    assert.deepEqual(parseNvidiaSmiCsv("NVIDIA GH200 480GB, [N/A], GPU-aaaa-bbbb"), [
      { name: "NVIDIA GH200 480GB", memoryMb: 0, uuid: "GPU-aaaa-bbbb" },
    ]);
  });

  it("gives nothing for empty output", () => {
    assert.deepEqual(parseNvidiaSmiCsv(""), []);
  });
});

describe("discoverGpus with a fake nvidia-smi", () => {
  let dir = "";
  before(async () => {
    dir = await mkdtemp(path.join(os.tmpdir(), "corral-gpu-"));
  });
  after(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  async function script(name: string, body: string): Promise<string> {
    const file = path.join(dir, name);
    await writeFile(file, `#!/bin/sh\n${body}\n`);
    await chmod(file, 0o755);
    return file;
  }

  it("runs the query as argv and reads its output", async () => {
    const argsFile = path.join(dir, "args.txt");
    const command = await script(
      "nvidia-smi-ok",
      `for a in "$@"; do printf '%s\\n' "$a"; done > '${argsFile}'\nprintf '%s\\n%s\\n' '${h100}' '${a100}'`,
    );
    const result = await discoverGpus({ command });
    assert.equal(result.warning, undefined);
    assert.deepEqual(
      result.gpus.map((gpu) => [gpu.name, gpu.memoryMb]),
      [
        ["NVIDIA H100 80GB HBM3", 81559],
        ["NVIDIA A100-SXM4-40GB", 40960],
      ],
    );
    assert.deepEqual((await readFile(argsFile, "utf8")).trim().split("\n"), [...nvidiaSmiArgs]);
  });

  it("reports no GPUs and a warning when nvidia-smi fails", async () => {
    const command = await script(
      "nvidia-smi-fail",
      'echo "NVIDIA-SMI has failed because it couldn\'t communicate with the NVIDIA driver." >&2\nexit 1',
    );
    const result = await discoverGpus({ command });
    assert.deepEqual(result.gpus, []);
    assert.match(result.warning ?? "", /exited with status 1.*couldn't communicate with the NVIDIA driver/);
  });

  it("treats 'No devices were found' as a machine without GPUs, not a fault", async () => {
    const command = await script("nvidia-smi-none", "echo 'No devices were found'\nexit 6");
    assert.deepEqual(await discoverGpus({ command }), { gpus: [] });
  });

  it("reports no GPUs and no warning when nvidia-smi does not exist", async () => {
    assert.deepEqual(await discoverGpus({ command: path.join(dir, "no-such-nvidia-smi") }), { gpus: [] });
  });

  it("kills an nvidia-smi that hangs, at the timeout", async () => {
    const command = await script("nvidia-smi-hang", "exec sleep 30");
    const started = Date.now();
    const result = await discoverGpus({ command, timeoutMs: 300 });
    assert.ok(Date.now() - started < 5_000, "did not wait for the hung command");
    assert.deepEqual(result.gpus, []);
    assert.match(result.warning ?? "", /did not answer within 300 ms/);
  });

  it("stops an nvidia-smi that prints without end, at the output cap", async () => {
    const command = await script("nvidia-smi-flood", "exec yes 'NVIDIA X, 1, GPU-1'");
    const result = await discoverGpus({ command, maxOutputBytes: 64 * 1024 });
    assert.deepEqual(result.gpus, []);
    assert.match(result.warning ?? "", /output cap/);
  });

  it("warns when nvidia-smi succeeds but prints nothing readable", async () => {
    const command = await script(
      "nvidia-smi-odd",
      "echo 'Field \"memory.totl\" is not a valid field to query.'",
    );
    const result = await discoverGpus({ command });
    assert.deepEqual(result.gpus, []);
    assert.match(result.warning ?? "", /no GPU line that could be read/);
  });

  it("feeds readSystemResources: GPUs reported, layers from GPU memory, warnings passed on", async () => {
    const ok = await script("nvidia-smi-two", `printf '%s\\n%s\\n' '${h100}' '${a100}'`);
    const withGpus = await readSystemResources({ gpu: { command: ok } });
    assert.equal(withGpus.gpus.length, 2);
    assert.equal(withGpus.maxLayers, 239); // (81 559 + 40 960) MiB / 512 = 239.3, under the 256 cap
    const failing = await script("nvidia-smi-exit1", "exit 1");
    const warnings: string[] = [];
    const without = await readSystemResources({
      gpu: { command: failing },
      onWarning: (message) => warnings.push(message),
    });
    assert.deepEqual(without.gpus, []);
    assert.equal(warnings.length, 1);
    assert.match(warnings[0] ?? "", /^GPU discovery: .*exited with status 1/);
  });
});

describe("maxLayersFor", () => {
  const gpu = (memoryMb: number) => ({ name: "g", memoryMb, uuid: "GPU-1" });
  it("uses GPU memory when there are GPUs, system memory otherwise, 512 MiB a layer, clamped to [1, 256]", () => {
    assert.equal(maxLayersFor(24_000, []), 46);
    assert.equal(maxLayersFor(24_000, [gpu(8_192)]), 16);
    assert.equal(maxLayersFor(24_000, [gpu(8_192), gpu(8_192)]), 32);
    assert.equal(maxLayersFor(256, []), 1);
    assert.equal(maxLayersFor(0, [gpu(0)]), 1);
    assert.equal(maxLayersFor(1_000_000, []), 256);
    assert.equal(maxLayersFor(1_024, [gpu(81_559), gpu(81_559)]), 256);
  });
});

describe("selectDisks", () => {
  const entry = (fs: string, type: string, mount: string, size = 1_000): FsEntry => ({
    fs,
    type,
    mount,
    size,
  });

  it("keeps real file systems and drops memory-backed, kernel and image ones", () => {
    const disks = selectDisks([
      entry("/dev/vda", "ext4", "/", 270e9),
      entry("/dev/nvme0n1p1", "xfs", "/data", 2e12),
      entry("/dev/sda1", "vfat", "/boot/efi", 5e8),
      entry("tmpfs", "tmpfs", "/dev/shm"),
      entry("tmpfs", "tmpfs", "/tmp"),
      entry("devtmpfs", "devtmpfs", "/dev"),
      entry("/dev/loop3", "squashfs", "/snap/core/1"),
      entry("proc", "proc", "/proc"),
      entry("cgroup2", "cgroup2", "/sys/fs/cgroup"),
      entry("overlay", "overlay", "/var/lib/docker/overlay2/abc/merged"),
      entry("/dev/sdb1", "ext4", "/dev/odd-but-not-a-disk"),
      entry("/dev/sdc1", "ext4", "/empty", 0),
    ]);
    assert.deepEqual(disks, [
      { mount: "/", sizeBytes: 270e9 },
      { mount: "/boot/efi", sizeBytes: 5e8 },
      { mount: "/data", sizeBytes: 2e12 },
    ]);
  });

  it("lists a mount once and a device once, at its shortest mount", () => {
    const disks = selectDisks([
      entry("/dev/vda", "ext4", "/etc/hosts", 270e9),
      entry("/dev/vda", "ext4", "/", 270e9),
      entry("/dev/vda", "ext4", "/etc/resolv.conf", 270e9),
      entry("/dev/vdb", "ext4", "/srv", 10e9),
      entry("/dev/vdb", "ext4", "/srv", 10e9),
    ]);
    assert.deepEqual(disks, [
      { mount: "/", sizeBytes: 270e9 },
      { mount: "/srv", sizeBytes: 10e9 },
    ]);
  });

  it("keeps a container's overlay root, and only that overlay", () => {
    assert.deepEqual(
      selectDisks([
        entry("overlay", "overlay", "/", 100e9),
        entry("overlay", "overlay", "/merged", 100e9),
        entry("shm", "tmpfs", "/dev/shm"),
      ]),
      [{ mount: "/", sizeBytes: 100e9 }],
    );
  });
});

describe("readSystemResources on this machine", () => {
  it("gives plausible figures", async () => {
    const warnings: string[] = [];
    const resources = await readSystemResources({
      gpu: { command: "/nonexistent/nvidia-smi" },
      onWarning: (message) => warnings.push(message),
    });
    assert.deepEqual(warnings, []);
    assert.ok(resources.cpuCores >= 1);
    assert.equal(resources.cpuCores, os.availableParallelism());
    const totalMb = os.totalmem() / (1024 * 1024);
    const limit = process.constrainedMemory?.() ?? 0;
    const expectedMb = limit > 0 && limit < os.totalmem() ? limit / (1024 * 1024) : totalMb;
    assert.ok(
      Math.abs(resources.memoryMb - expectedMb) <= expectedMb * 0.01,
      `${resources.memoryMb} MiB vs ${expectedMb} MiB`,
    );
    assert.deepEqual(resources.gpus, []);
    assert.equal(resources.usedLayers, 0);
    assert.equal(resources.maxLayers, maxLayersFor(resources.memoryMb, []));
    assert.ok(resources.maxLayers >= 1 && resources.maxLayers <= 256);
    assert.ok(resources.disks.length >= 1, "at least one disk");
    for (const disk of resources.disks) assert.ok(disk.sizeBytes > 0, `${disk.mount} has a size`);
    assert.equal(new Set(resources.disks.map((d) => d.mount)).size, resources.disks.length, "no repeats");
    const forbidden = await memoryBackedMounts();
    for (const disk of resources.disks)
      assert.ok(!forbidden.has(disk.mount), `${disk.mount} is a memory-backed or kernel file system`);
  });

  it("reports the real nvidia-smi's GPUs when the machine has one, and none otherwise", async () => {
    const result = await discoverGpus();
    if (!onPath("nvidia-smi")) {
      assert.deepEqual(result, { gpus: [] });
      return;
    }
    assert.equal(result.warning, undefined);
    assert.ok(result.gpus.length >= 1);
    for (const gpu of result.gpus) {
      assert.match(gpu.uuid, /^GPU-/);
      assert.ok(gpu.memoryMb > 0 && gpu.name !== "");
    }
  });
});

describe("the heartbeat load reader", () => {
  it("gives CPU use in percent and memory in use within the machine's memory", async () => {
    const load = await createLoadReader()();
    assert.ok(load.cpuUsage >= 0 && load.cpuUsage <= 100, String(load.cpuUsage));
    const totalMb = os.totalmem() / (1024 * 1024);
    assert.ok(load.memoryUsedMb > 0 && load.memoryUsedMb < totalMb, String(load.memoryUsedMb));
  });

  it("sees a busy CPU as busy", async () => {
    const reader = createLoadReader({ firstSampleMs: 50 });
    await reader(); // baseline
    const until = Date.now() + 300;
    let spins = 0;
    while (Date.now() < until) spins++;
    const busy = await reader();
    // One of our cores spun the whole time: at least 1/cores of the machine, less some scheduling slack.
    const floor = (100 / os.availableParallelism()) * 0.5;
    assert.ok(busy.cpuUsage >= floor, `cpuUsage ${busy.cpuUsage} < ${floor} after ${spins} spins`);
  });
});

/** Mount points of memory-backed and kernel file systems, from /proc/self/mounts (Linux only). */
async function memoryBackedMounts(): Promise<Set<string>> {
  const mounts = new Set<string>();
  if (!existsSync("/proc/self/mounts")) return mounts;
  const pseudo = new Set(["tmpfs", "devtmpfs", "proc", "sysfs", "cgroup", "cgroup2", "devpts", "mqueue"]);
  for (const line of (await readFile("/proc/self/mounts", "utf8")).split("\n")) {
    const [, mount, type] = line.split(" ");
    if (mount !== undefined && type !== undefined && pseudo.has(type))
      mounts.add(mount.replace(/\\040/g, " "));
  }
  return mounts;
}

function onPath(command: string): boolean {
  return (process.env.PATH ?? "")
    .split(path.delimiter)
    .some((dir) => dir !== "" && existsSync(path.join(dir, command)));
}
