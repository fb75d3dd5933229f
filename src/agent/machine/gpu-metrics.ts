import { execFile } from "node:child_process";
import type { GpuPoint } from "../../core/metrics/metrics-history.ts";

/** nvidia-smi's per-GPU figures, one CSV line per GPU. */
const gpuQuery = [
  "--query-gpu=uuid,name,utilization.gpu,memory.used,memory.total,temperature.gpu",
  "--format=csv,noheader,nounits",
];

/** Parses the CSV of `gpuQuery`; "[N/A]" figures read as 0 (temperature: absent). */
export function parseGpuMetricsCsv(text: string): GpuPoint[] {
  const number = (field: string | undefined) => {
    const value = Number((field ?? "").trim());
    return Number.isFinite(value) && (field ?? "").trim() !== "" ? value : undefined;
  };
  const gpus: GpuPoint[] = [];
  for (const line of text.split(/\r?\n/)) {
    const raw = line.split(",");
    const fields = raw.map((field) => field.trim());
    if (fields.length < 6 || !/^(GPU|MIG)-/.test(fields[0] ?? "")) continue;
    // A name may hold commas: the numbers are the last four fields.
    const [used, total, temperature] = fields.slice(-3);
    const utilization = fields.at(-4);
    const celsius = number(temperature);
    gpus.push({
      uuid: fields[0] ?? "",
      name: raw.slice(1, -4).join(",").trim(),
      utilizationPercent: number(utilization) ?? 0,
      memoryUsedBytes: (number(used) ?? 0) * 1024 * 1024,
      memoryTotalBytes: (number(total) ?? 0) * 1024 * 1024,
      ...(celsius === undefined ? {} : { temperatureCelsius: celsius }),
    });
    if (gpus.length >= 16) break;
  }
  return gpus;
}

/** A reader of every GPU's figures now (nvidia-smi, asked on each call); [] without NVIDIA GPUs. */
export function createGpuReader(command: string | false): () => Promise<GpuPoint[]> {
  // Given up after the first ENOENT: a machine without nvidia-smi is not asked every interval.
  let absent = command === false;
  return () =>
    new Promise((resolve) => {
      if (absent || command === false) {
        resolve([]);
        return;
      }
      execFile(
        command,
        gpuQuery,
        { timeout: 5_000, maxBuffer: 256 * 1024, killSignal: "SIGKILL", encoding: "utf8" },
        (error, stdout) => {
          if (error !== null) {
            if ((error as { code?: unknown }).code === "ENOENT") absent = true;
            resolve([]);
            return;
          }
          resolve(parseGpuMetricsCsv(stdout));
        },
      );
    });
}
