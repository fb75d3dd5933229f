import { stat } from "node:fs/promises";
import type { Disk } from "../../core/nodes/node.ts";

/** One entry of si.fsSize(), the fields corral reads. */
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
 * Keeps the real file systems of a si.fsSize() listing: no pseudo or memory-backed types, nothing under
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

export interface DiskSample {
  mount: string;
  filesystem: string;
  totalBytes: number;
  usedBytes: number;
  /** Percent, 0–100. */
  usage: number;
}

/** si.fsSize() entries with usage, the ones `selectDisks` keeps (real file systems, one per device). */
export interface FsUsageEntry extends FsEntry {
  used: number;
  available?: number;
}

export function disksFromFsSize(entries: readonly FsUsageEntry[]): DiskSample[] {
  const byMount = new Map(entries.map((entry) => [entry.mount, entry]));
  return selectDisks(entries).flatMap((disk) => {
    const entry = byMount.get(disk.mount);
    if (entry === undefined) return [];
    const used = Number.isFinite(entry.used) && entry.used > 0 ? entry.used : 0;
    return [
      {
        mount: disk.mount,
        filesystem: entry.fs,
        totalBytes: disk.sizeBytes,
        usedBytes: used,
        usage: Math.min(100, (used / disk.sizeBytes) * 100),
      },
    ];
  });
}

/**
 * The file system listing, given up after `timeoutMs`: `df` (behind si.fsSize) can hang on a dead network
 * mount, and a node that cannot list its disks still reports everything else. Empty, with a warning,
 * when the listing fails or hangs.
 */
export async function listFileSystemsWithin(
  list: () => Promise<FsUsageEntry[]>,
  timeoutMs: number,
  warn: (message: string) => void,
): Promise<FsUsageEntry[]> {
  let timer: NodeJS.Timeout | undefined;
  const timedOut = new Promise<"timeout">((resolve) => {
    timer = setTimeout(() => resolve("timeout"), timeoutMs);
  });
  try {
    const listing = await Promise.race([list(), timedOut]);
    if (listing === "timeout") {
      warn(`disks: listing file systems took longer than ${timeoutMs} ms; reporting no disks`);
      return [];
    }
    return listing;
  } catch (error) {
    warn(`disks: ${error instanceof Error ? error.message : String(error)}; reporting no disks`);
    return [];
  } finally {
    clearTimeout(timer);
  }
}

/** Docker bind-mounts single files (/etc/hosts, /etc/resolv.conf): they show in df but are no disks. */
export async function dropFileMounts(disks: Disk[]): Promise<Disk[]> {
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
