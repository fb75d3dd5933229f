import { readFileSync } from "node:fs";

/**
 * The CPU for a run whose pipeline gives no cpu_pin (NanoPing: "chosen automatically"): among the CPUs
 * this process may use, the one with the fewest live runs pinned to it, then the least busy since the
 * previous choice (from /proc/stat; since boot the first time), then the lowest number. Runs spread
 * over the CPUs, and a CPU kept busy by other work is avoided.
 */
export interface CpuChoice {
  readonly cpu: number;
  /** Why this one, for the run's cpu_pin detail. */
  readonly reason: string;
}

interface CpuTimes {
  readonly busy: number;
  readonly total: number;
}

let previous: Map<number, CpuTimes> | undefined;

/** Per-CPU jiffies from /proc/stat (`cpuN user nice system idle iowait irq softirq steal ...`). */
function readCpuTimes(): Map<number, CpuTimes> {
  const times = new Map<number, CpuTimes>();
  for (const line of readFileSync("/proc/stat", "utf8").split("\n")) {
    const match = /^cpu(\d+)\s+(.*)$/.exec(line);
    if (match === null) continue;
    const fields = (match[2] as string).trim().split(/\s+/).map(Number);
    // Guest time is already counted in user/nice; idle and iowait are the CPU doing nothing.
    const total = fields.slice(0, 8).reduce((a, b) => a + b, 0);
    const idle = (fields[3] ?? 0) + (fields[4] ?? 0);
    times.set(Number(match[1]), { busy: total - idle, total });
  }
  return times;
}

/** Parses a cpu list such as `0-3,8,10-11`. */
export function parseCpuList(text: string): Set<number> {
  const cpus = new Set<number>();
  for (const part of text.trim().split(",")) {
    if (part === "") continue;
    const [a, b] = part.split("-").map(Number) as [number, number | undefined];
    for (let n = a; n <= (b ?? a); n++) cpus.add(n);
  }
  return cpus;
}

/** The CPUs this process may run on (its affinity, e.g. a container's cpuset) that are online. */
function usableCpus(): number[] {
  const allowed = /Cpus_allowed_list:\s*(\S+)/.exec(readFileSync("/proc/self/status", "utf8"))?.[1];
  const online = parseCpuList(readFileSync("/sys/devices/system/cpu/online", "utf8"));
  const mine = allowed === undefined ? online : parseCpuList(allowed);
  return [...mine].filter((cpu) => online.has(cpu)).sort((a, b) => a - b);
}

/**
 * Chooses a CPU; `pinned` counts the live runs pinned to each CPU. Throws where the OS does not say
 * (no /proc): the caller then runs unpinned and reports why.
 */
export function chooseCpu(pinned: ReadonlyMap<number, number>): CpuChoice {
  const cpus = usableCpus();
  if (cpus.length === 0) throw new Error("no online CPU is allowed to this process");
  const now = readCpuTimes();
  const before = previous;
  previous = now;
  const busy = (cpu: number): number => {
    const a = now.get(cpu);
    if (a === undefined) return 1;
    const b = before?.get(cpu);
    const total = a.total - (b?.total ?? 0);
    return total <= 0 ? 0 : (a.busy - (b?.busy ?? 0)) / total;
  };
  const ranked = cpus
    .map((cpu) => ({ cpu, runs: pinned.get(cpu) ?? 0, busy: busy(cpu) }))
    .sort((x, y) => x.runs - y.runs || x.busy - y.busy || x.cpu - y.cpu);
  const best = ranked[0] as { cpu: number; runs: number; busy: number };
  return {
    cpu: best.cpu,
    reason:
      `chosen automatically: ${best.runs} other run(s) pinned there, ${Math.round(best.busy * 100)}% busy ` +
      `${before === undefined ? "since boot" : "since the last choice"} (of CPUs ${cpus.join(",")})`,
  };
}
