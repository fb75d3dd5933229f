import { stat } from "node:fs/promises";
import os from "node:os";
import { fsSize } from "systeminformation/lib/filesystem.js";
import type { Disk, Resources } from "../core/node.ts";
import { maxLayersFor } from "../core/node-capacity.ts";
import { discoverGpus, type GpuDiscoveryOptions } from "./gpu-discovery.ts";

export interface SystemResourcesOptions {
  /** How GPUs are found (nvidia-smi path, timeout, output cap). */
  gpu?: GpuDiscoveryOptions;
  /** `df` (behind si.fsSize) can hang on a dead network mount: give up on disks after this; default 5 000 ms. */
  diskTimeoutMs?: number;
  /** Told about anything that could not be read (the figure is then left empty, never invented). */
  onWarning?: (message: string) => void;
}

/** What this machine has: CPU cores, memory, GPUs, disks, and the model layers it can hold (none used yet). */
export async function readSystemResources(options: SystemResourcesOptions = {}): Promise<Resources> {
  const warn = options.onWarning ?? (() => {});
  const [gpuResult, disks] = await Promise.all([
    discoverGpus(options.gpu),
    readDisks(options.diskTimeoutMs ?? 5_000, warn),
  ]);
  if (gpuResult.warning !== undefined) warn(`GPU discovery: ${gpuResult.warning}`);
  const memoryMb = totalMemoryMb();
  return {
    cpuCores: os.availableParallelism(),
    memoryMb,
    gpus: gpuResult.gpus,
    maxLayers: maxLayersFor(memoryMb, gpuResult.gpus),
    usedLayers: 0,
    disks,
  };
}

/**
 * Total memory in MiB: the machine's, or the cgroup limit the process runs under when that is smaller
 * (a container sees the host's memory in /proc/meminfo, but can only use its limit).
 */
export function totalMemoryMb(): number {
  const total = os.totalmem();
  const limit = process.constrainedMemory?.() ?? 0;
  const usable = limit > 0 && limit < total ? limit : total;
  return Math.floor(usable / (1024 * 1024));
}

/** One entry of fsSize(), the fields this module reads. */
export interface FsEntry {
  fs: string;
  type: string;
  size: number;
  mount: string;
}

/** File systems that hold no user data: kernel interfaces, memory-backed, images, automounter stubs. */
const pseudoTypes = new Set([
  "tmpfs",
  "devtmpfs",
  "ramfs",
  "devfs",
  "proc",
  "sysfs",
  "cgroup",
  "cgroup2",
  "devpts",
  "mqueue",
  "debugfs",
  "tracefs",
  "securityfs",
  "pstore",
  "bpf",
  "autofs",
  "fusectl",
  "configfs",
  "hugetlbfs",
  "nsfs",
  "efivarfs",
  "binfmt_misc",
  "rpc_pipefs",
  "nfsd",
  "selinuxfs",
  "squashfs",
  "overlay",
  "overlayfs",
  "aufs",
  "fuse.lxcfs",
  "fuse.gvfsd-fuse",
  "fuse.portal",
  "fuse.snapfuse",
  "none",
]);

const pseudoMountPrefixes = ["/proc", "/sys", "/dev"];

/**
 * Keeps the real file systems of a fsSize() listing: no pseudo or memory-backed types, nothing under
 * /proc, /sys or /dev, no zero sizes, one entry per mount, and one per device (a device
 * mounted at several places — bind mounts, btrfs subvolumes — is listed once, at its shortest mount).
 * One exception: an overlay mounted at "/" is kept, since in a container it is the disk the node writes to.
 */
export function selectDisks(entries: readonly FsEntry[]): Disk[] {
  const byMount = new Map<string, FsEntry>();
  for (const entry of entries) {
    const type = entry.type.toLowerCase();
    const containerRoot = entry.mount === "/" && (type === "overlay" || type === "overlayfs");
    if (pseudoTypes.has(type) && !containerRoot) continue;
    if (pseudoMountPrefixes.some((prefix) => entry.mount === prefix || entry.mount.startsWith(`${prefix}/`)))
      continue;
    if (!(Number.isFinite(entry.size) && entry.size > 0) || entry.mount === "") continue;
    if (!byMount.has(entry.mount)) byMount.set(entry.mount, entry);
  }
  const byDevice = new Map<string, FsEntry>();
  for (const entry of byMount.values()) {
    const key = entry.fs === "" ? `mount:${entry.mount}` : `fs:${entry.fs}`;
    const kept = byDevice.get(key);
    if (kept === undefined || entry.mount.length < kept.mount.length) byDevice.set(key, entry);
  }
  return [...byDevice.values()]
    .map((entry) => ({ mount: entry.mount, sizeBytes: entry.size }))
    .sort((a, b) => (a.mount < b.mount ? -1 : a.mount > b.mount ? 1 : 0));
}

async function readDisks(timeoutMs: number, warn: (message: string) => void): Promise<Disk[]> {
  let timer: NodeJS.Timeout | undefined;
  const timedOut = new Promise<"timeout">((resolve) => {
    timer = setTimeout(() => resolve("timeout"), timeoutMs);
  });
  try {
    const listing = await Promise.race([fsSize(), timedOut]);
    if (listing === "timeout") {
      warn(`disks: listing file systems took longer than ${timeoutMs} ms; reporting no disks`);
      return [];
    }
    return await dropFileMounts(selectDisks(listing));
  } catch (error) {
    warn(`disks: ${error instanceof Error ? error.message : String(error)}; reporting no disks`);
    return [];
  } finally {
    clearTimeout(timer);
  }
}

/** Docker bind-mounts single files (/etc/hosts, /etc/resolv.conf): they show in df but are no disks. */
async function dropFileMounts(disks: Disk[]): Promise<Disk[]> {
  const kept = await Promise.all(
    disks.map(async (disk) => {
      try {
        return (await stat(disk.mount)).isDirectory();
      } catch {
        return true; // cannot look (permissions): df listed it, keep it
      }
    }),
  );
  return disks.filter((_, index) => kept[index]);
}

export interface Load {
  /** Busy share of all CPUs since the previous reading, in percent 0–100. */
  cpuUsage: number;
  /** Memory in use (total − available), MiB. */
  memoryUsedMb: number;
}

interface CpuTimes {
  busy: number;
  total: number;
}

function cpuTimes(): CpuTimes {
  let busy = 0;
  let total = 0;
  for (const cpu of os.cpus()) {
    const t = cpu.times;
    const all = t.user + t.nice + t.sys + t.irq + t.idle;
    total += all;
    busy += all - t.idle;
  }
  return { busy, total };
}

/**
 * A load reader with its own memory of the last CPU sample: each reading covers the time since the
 * previous one (a heartbeat's interval). The first reading, or one taken too soon after the last to show
 * any CPU time, samples for `sampleMs` (default 100 ms). No subprocess, no lasting timer.
 */
export function createLoadReader(sampleMs = 100): () => Promise<Load> {
  let previous: CpuTimes | undefined;
  return async () => {
    let now = cpuTimes();
    if (previous === undefined || now.total - previous.total <= 0) {
      previous = now;
      await new Promise<void>((resolve) => setTimeout(resolve, sampleMs));
      now = cpuTimes();
    }
    const total = now.total - previous.total;
    const busy = now.busy - previous.busy;
    previous = now;
    const cpuUsage = total > 0 ? Math.min(100, Math.max(0, (busy / total) * 100)) : 0;
    const usedBytes = Math.max(0, os.totalmem() - os.freemem());
    return { cpuUsage, memoryUsedMb: Math.round(usedBytes / (1024 * 1024)) };
  };
}

/** CPU use since the previous call (100 ms sample on the first) and memory in use; cheap, for heartbeats. */
export const readLoad: () => Promise<Load> = createLoadReader();
