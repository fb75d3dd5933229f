import { readdirSync, readFileSync, renameSync, writeFileSync } from "node:fs";
import { setTimeout as sleep } from "node:timers/promises";

/**
 * The process groups an agent started (pipeline `process` blocks, provisioning steps), kept in a small
 * file in its data dir so that the next agent on that dir can kill whatever the last one left behind:
 * after a kill -9 of the agent, a restarted agent would otherwise start a pipeline again next to the
 * old copy, and a provisioning step would finish after its job was reported failed.
 *
 * Each entry names a group by its leader's pid and the leader's start time (/proc/<pid>/stat field 22):
 * a recycled pid has another start time and is left alone. The boot id ties entries to this boot (a
 * reboot ended every group already; its clock ticks mean nothing after).
 */
export interface LedgerEntry {
  readonly pgid: number;
  /** The leader's start time in clock ticks after boot, as /proc/<pid>/stat gives it. */
  readonly startTime: string;
  readonly bootId: string;
  /** What it was, for the log line when it is reaped (no user text: a run id and a block name). */
  readonly what: string;
}

/** What the pipelines and provisioning code need of a ledger (tests may pass none). */
export interface ProcessRecorder {
  /** `startTime`: read by whoever spawned it, when that is another thread (it may be reaped by now). */
  record(pid: number, what: string, startTime?: string): void;
  forget(pid: number): void;
}

interface ProcStat {
  readonly state: string;
  readonly pgrp: number;
  readonly startTime: string;
}

/** /proc/<pid>/stat after the command name (which may hold spaces and parentheses). */
export function readProcStat(pid: number): ProcStat | undefined {
  try {
    const text = readFileSync(`/proc/${pid}/stat`, "utf8");
    const fields = text.slice(text.lastIndexOf(")") + 2).split(" ");
    // fields[0] is field 3 (state), fields[2] field 5 (pgrp), fields[19] field 22 (starttime).
    return { state: fields[0] ?? "", pgrp: Number(fields[2]), startTime: fields[19] ?? "" };
  } catch {
    return undefined;
  }
}

function bootId(): string {
  try {
    return readFileSync("/proc/sys/kernel/random/boot_id", "utf8").trim();
  } catch {
    return "";
  }
}

/**
 * The live (not zombie) members of a recorded group, or none when the group is not ours any more: its
 * leader's pid now belongs to a process with another start time. A group whose leader is gone keeps
 * its id as long as any member lives (the kernel does not hand out a pid in use as a group id), so
 * members that started no earlier than the leader are still the group we recorded.
 */
export function liveMembers(entry: LedgerEntry): number[] {
  const leader = readProcStat(entry.pgid);
  if (leader !== undefined && leader.startTime !== entry.startTime) return [];
  const members: number[] = [];
  for (const name of readdirSync("/proc")) {
    if (!/^\d+$/.test(name)) continue;
    const stat = readProcStat(Number(name));
    if (stat === undefined || stat.state === "Z" || stat.pgrp !== entry.pgid) continue;
    if (BigInt(stat.startTime || "0") >= BigInt(entry.startTime || "0")) members.push(Number(name));
  }
  return members;
}

function signalGroup(pgid: number, signal: NodeJS.Signals): void {
  try {
    process.kill(-pgid, signal);
  } catch {
    // gone already
  }
}

/**
 * Kills the recorded groups that still live: SIGTERM, then SIGKILL to what is left after `graceMs`.
 * Answers what was reaped. Bounded: it waits at most `graceMs` plus 2 s.
 */
export async function reapGroups(entries: readonly LedgerEntry[], graceMs: number): Promise<LedgerEntry[]> {
  const boot = bootId();
  const live = entries.filter((e) => e.bootId === boot && liveMembers(e).length > 0);
  for (const entry of live) signalGroup(entry.pgid, "SIGTERM");
  const deadline = Date.now() + graceMs;
  while (Date.now() < deadline && live.some((e) => liveMembers(e).length > 0)) await sleep(50);
  for (const entry of live) if (liveMembers(entry).length > 0) signalGroup(entry.pgid, "SIGKILL");
  const killDeadline = Date.now() + 2_000;
  while (Date.now() < killDeadline && live.some((e) => liveMembers(e).length > 0)) await sleep(20);
  return live;
}

/**
 * One per data dir, on the agent's main thread (the only writer). Every change is written at once
 * (temp file + rename, mode 0600): the next spawn may be the last thing this process does. No fsync:
 * only a reboot loses the page cache, and a reboot ended the groups too.
 */
export class ProcessLedger implements ProcessRecorder {
  readonly #file: string;
  readonly #boot = bootId();
  readonly #entries = new Map<number, LedgerEntry>();
  readonly #onWriteError: ((error: Error) => void) | undefined;

  private constructor(file: string, onWriteError?: (error: Error) => void) {
    this.#file = file;
    this.#onWriteError = onWriteError;
  }

  /**
   * Reaps what an earlier agent on this file left running, then starts an empty ledger. Call it before
   * anything that spawns (pipelines restarting with the agent).
   */
  static async open(
    file: string,
    options: {
      graceMs: number;
      onReaped?: (entry: LedgerEntry) => void;
      /** A later write failed (disk full, data dir gone): the spawn goes on, the group is just not recorded. */
      onWriteError?: (error: Error) => void;
    },
  ): Promise<ProcessLedger> {
    const ledger = new ProcessLedger(file, options.onWriteError);
    const left = readEntries(file);
    if (left.length > 0) {
      for (const entry of await reapGroups(left, options.graceMs)) options.onReaped?.(entry);
    }
    // This first write may throw: an agent that cannot keep its ledger does not start.
    ledger.#write();
    return ledger;
  }

  record(pid: number, what: string, startTime?: string): void {
    const known = startTime ?? readProcStat(pid)?.startTime;
    // Unknowable only if the spawner did not say and the leader is reaped already; its starter kills
    // the group when it ends, as always.
    if (known === undefined || !/^\d+$/.test(known)) return;
    this.#entries.set(pid, { pgid: pid, startTime: known, bootId: this.#boot, what });
    this.#tryWrite();
  }

  forget(pid: number): void {
    if (this.#entries.delete(pid)) this.#tryWrite();
  }

  /** Called from spawn paths and worker messages, where a throw would take the agent down. */
  #tryWrite(): void {
    try {
      this.#write();
    } catch (error) {
      this.#onWriteError?.(error as Error);
    }
  }

  get entries(): readonly LedgerEntry[] {
    return [...this.#entries.values()];
  }

  #write(): void {
    const temp = `${this.#file}.${process.pid}.tmp`;
    writeFileSync(temp, JSON.stringify([...this.#entries.values()]), { mode: 0o600 });
    renameSync(temp, this.#file);
  }
}

function readEntries(file: string): LedgerEntry[] {
  let text: string;
  try {
    text = readFileSync(file, "utf8");
  } catch {
    return [];
  }
  try {
    const parsed = JSON.parse(text) as unknown;
    if (!Array.isArray(parsed)) return [];
    return parsed.filter(
      (e): e is LedgerEntry =>
        typeof e === "object" &&
        e !== null &&
        Number.isInteger(e.pgid) &&
        e.pgid > 1 &&
        typeof e.startTime === "string" &&
        /^\d+$/.test(e.startTime) &&
        typeof e.bootId === "string" &&
        typeof e.what === "string",
    );
  } catch {
    // A torn file cannot happen (rename), but a hand-edited one can: nothing to reap then.
    return [];
  }
}
