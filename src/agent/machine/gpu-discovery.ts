import { execFile } from "node:child_process";
import type { Gpu } from "../../core/nodes/node.ts";

/** The query the agent runs; one CSV line per GPU: `name, memory.total (MiB), uuid`. */
export const nvidiaSmiArgs: readonly string[] = [
  "--query-gpu=name,memory.total,uuid",
  "--format=csv,noheader,nounits",
];

export interface GpuDiscoveryOptions {
  /** The nvidia-smi binary: a name looked up on PATH, or a path. Default "nvidia-smi". */
  command?: string;
  /** The command is killed after this long; default 5 000 ms. */
  timeoutMs?: number;
  /** Bytes of stdout or stderr read at most before the command is killed; default 1 MiB. */
  maxOutputBytes?: number;
}

export interface GpuDiscovery {
  gpus: Gpu[];
  /** Set when nvidia-smi exists but could not be used; for the caller to log. Absent when all is well. */
  warning?: string;
}

/** More GPUs than any machine has: a bound on what a broken or hostile nvidia-smi can make us report. */
const maxGpus = 256;

const uuidPattern = /^(GPU|MIG)-[0-9A-Za-z-]+$/;

/**
 * Parses `nvidia-smi --query-gpu=name,memory.total,uuid --format=csv,noheader,nounits`. nvidia-smi quotes
 * nothing, so a name may itself contain commas: the line is split from the right for the last two fields.
 * Lines that are blank or do not look like a GPU (no `GPU-…` uuid, no name) are ignored; a memory figure
 * nvidia-smi cannot give ("[N/A]") reads as 0; a uuid seen twice is kept once.
 */
export function parseNvidiaSmiCsv(text: string): Gpu[] {
  const gpus: Gpu[] = [];
  const seen = new Set<string>();
  for (const raw of text.split(/\r?\n/)) {
    if (gpus.length >= maxGpus) break;
    const line = raw.trim();
    const lastComma = line.lastIndexOf(",");
    if (lastComma < 0) continue;
    const memoryComma = line.lastIndexOf(",", lastComma - 1);
    if (memoryComma < 0) continue;
    const name = line.slice(0, memoryComma).trim();
    const memoryText = line.slice(memoryComma + 1, lastComma).trim();
    const uuid = line.slice(lastComma + 1).trim();
    if (name === "" || !uuidPattern.test(uuid) || seen.has(uuid)) continue;
    const memory = parseMemoryMb(memoryText);
    if (memory === undefined) continue;
    seen.add(uuid);
    gpus.push({ name, memoryMb: memory, uuid });
  }
  return gpus;
}

/** A whole number of MiB; "[N/A]" and the like (a GPU that cannot say) → 0; anything else → undefined. */
function parseMemoryMb(text: string): number | undefined {
  if (/^\d+(\.\d+)?$/.test(text)) return Math.round(Number(text));
  if (/^\[.*\]$/.test(text)) return 0;
  return undefined;
}

interface ExecFailure {
  code?: string | number | null;
  killed?: boolean;
  signal?: NodeJS.Signals | null;
  message?: string;
}

/**
 * Lists this machine's NVIDIA GPUs with nvidia-smi (run as argv, no shell, with a timeout and an output
 * cap). No nvidia-smi on the machine → no GPUs and no warning; nvidia-smi present but failing (no driver,
 * timeout, odd output) → no GPUs and a warning. It never throws.
 */
export async function discoverGpus(options: GpuDiscoveryOptions = {}): Promise<GpuDiscovery> {
  const command = options.command ?? "nvidia-smi";
  const timeoutMs = options.timeoutMs ?? 5_000;
  const maxBuffer = options.maxOutputBytes ?? 1024 * 1024;
  return new Promise<GpuDiscovery>((resolve) => {
    execFile(
      command,
      [...nvidiaSmiArgs],
      { timeout: timeoutMs, maxBuffer, killSignal: "SIGKILL", windowsHide: true, encoding: "utf8" },
      (error, stdout, stderr) => {
        if (error === null) {
          const gpus = parseNvidiaSmiCsv(stdout);
          if (gpus.length === 0 && stdout.trim() !== "" && !noDevices(stdout))
            resolve({
              gpus,
              warning: `${command} printed no GPU line that could be read: ${firstLine(stdout)}`,
            });
          else resolve({ gpus });
          return;
        }
        const failure = error as ExecFailure;
        if (failure.code === "ENOENT") {
          resolve({ gpus: [] });
          return;
        }
        // A driver without devices says so and exits non-zero (6): a GPU-less machine, not a fault.
        if (noDevices(stdout) || noDevices(stderr)) {
          resolve({ gpus: [] });
          return;
        }
        resolve({ gpus: [], warning: describeFailure(command, failure, timeoutMs, stdout, stderr) });
      },
    );
  });
}

function noDevices(output: string): boolean {
  return /No devices were found/i.test(output);
}

function describeFailure(
  command: string,
  failure: ExecFailure,
  timeoutMs: number,
  stdout: string,
  stderr: string,
): string {
  const said = firstLine(stderr) || firstLine(stdout);
  const tail = said === "" ? "" : `: ${said}`;
  if (failure.code === "ERR_CHILD_PROCESS_STDIO_MAXBUFFER")
    return `${command} printed more than the output cap and was stopped`;
  if (failure.killed === true && failure.signal !== null && failure.signal !== undefined)
    return `${command} did not answer within ${timeoutMs} ms and was killed${tail}`;
  if (typeof failure.code === "number") return `${command} exited with status ${failure.code}${tail}`;
  if (failure.signal) return `${command} was killed by ${failure.signal}${tail}`;
  return `${command} could not be run (${failure.code ?? failure.message ?? "unknown error"})${tail}`;
}

function firstLine(text: string): string {
  const line = text.split(/\r?\n/).find((l) => l.trim() !== "") ?? "";
  return line.trim().slice(0, 200);
}
