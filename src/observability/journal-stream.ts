import { fstatSync } from "node:fs";
import { pino } from "pino";

/** sd-daemon(3) priorities for pino's levels: journald reads the `<N>` prefix off each line. */
const priorities: ReadonlyArray<readonly [number, number]> = [
  [60, 2], // fatal: crit
  [50, 3], // error: err
  [40, 4], // warning
  [30, 6], // info
  [0, 7], // debug, trace
];

/**
 * True when `fd` is the stream systemd connected to the journal (JOURNAL_STREAM is `<dev>:<inode>` of
 * it, per systemd.exec(5)); a redirect to a file or pipe of the unit's own keeps plain lines.
 */
export function writesToJournal(fd: number, env: NodeJS.ProcessEnv = process.env): boolean {
  const [dev, ino] = (env.JOURNAL_STREAM ?? "").split(":");
  if (dev === undefined || ino === undefined || dev === "") return false;
  try {
    const info = fstatSync(fd, { bigint: true });
    return info.dev === BigInt(dev) && info.ino === BigInt(ino);
  } catch {
    return false;
  }
}

export function priorityPrefix(line: string): string {
  const level = Number(/"level":(\d+)/.exec(line)?.[1] ?? 30);
  const priority = priorities.find(([at]) => level >= at)?.[1] ?? 6;
  return `<${priority}>`;
}

/**
 * The log destination for file descriptor `fd`: JSON lines as always, each prefixed with its syslog
 * priority when it goes to the journal (so `journalctl -p warning` filters corral's lines too).
 */
export function logDestination(fd: number): { write(line: string): void } {
  const out = pino.destination(fd);
  if (!writesToJournal(fd)) return out;
  return {
    write(line: string): void {
      out.write(priorityPrefix(line) + line);
    },
  };
}
