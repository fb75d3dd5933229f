/**
 * What the load benches measure in one timed window, and how windows add up. Shared so that every
 * bench reports rate, latency percentiles and CPU per operation the same way.
 */
export interface MeasuredSlice {
  /** Operations completed in the window. */
  readonly count: number;
  readonly seconds: number;
  /** Server CPU in the window, µs; null where it could not be read. */
  readonly serverCpuUs: number | null;
  /** The load generator's own CPU in the window, µs. */
  readonly clientCpuUs: number;
  /** Each operation's latency in the window, ms (may be empty for streams). */
  readonly latenciesMs: Float64Array;
}

export interface SliceTotals {
  readonly count: number;
  readonly seconds: number;
  readonly rate: number;
  readonly p50Ms: number | null;
  readonly p99Ms: number | null;
  /** Server CPU per operation, µs; null when any window's CPU is unknown. */
  readonly serverCpuUsPerOp: number | null;
  readonly serverCpuPct: number | null;
  readonly clientCpuPct: number;
}

/** Adds up measured windows: totals, rate, and latency percentiles over every operation. */
export function sumSlices(measured: readonly MeasuredSlice[]): SliceTotals {
  const sum = (f: (s: MeasuredSlice) => number) => measured.reduce((total, s) => total + f(s), 0);
  const count = sum((s) => s.count);
  const seconds = sum((s) => s.seconds);
  const cpuKnown = measured.every((s) => s.serverCpuUs !== null);
  const serverCpuUs = cpuKnown ? sum((s) => s.serverCpuUs ?? 0) : null;
  const latencies = new Float64Array(sum((s) => s.latenciesMs.length));
  let offset = 0;
  for (const s of measured) {
    latencies.set(s.latenciesMs, offset);
    offset += s.latenciesMs.length;
  }
  latencies.sort();
  const percentile = (q: number) =>
    latencies.length === 0
      ? null
      : (latencies[Math.min(latencies.length - 1, Math.floor(q * latencies.length))] ?? null);
  return {
    count,
    seconds,
    rate: seconds > 0 ? count / seconds : 0,
    p50Ms: percentile(0.5),
    p99Ms: percentile(0.99),
    serverCpuUsPerOp: serverCpuUs === null || count === 0 ? null : serverCpuUs / count,
    serverCpuPct: serverCpuUs === null || seconds === 0 ? null : serverCpuUs / 1e4 / seconds,
    clientCpuPct: seconds === 0 ? 0 : sum((s) => s.clientCpuUs) / 1e4 / seconds,
  };
}
