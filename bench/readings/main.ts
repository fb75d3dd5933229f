/**
 * Readings throughput: readings per second from a simulated analog input (the agent's simulated ADC)
 * delivered through the whole path — agent SampleInput → mTLS → controller DevicesService/WatchReadings →
 * loopback bridge → a gRPC client — next to the same sampling done by a direct in-process loop, in one run.
 *
 *   (a) direct: N sampler streams (the agent's own sampleStream over the simulated ADC) consumed in-process
 *   (b) path:   N WatchReadings streams through a real controller and a real joined agent (both in this
 *               process, like the client: the CPU figure is everything the path costs)
 *   (c) ceiling: a tight loop building Reading messages from the ADC, no timer (what one core could do)
 *
 * Every stream asks for the maximum rate (1000/s). Each case runs --seconds (default 4) per stream count
 * (--streams, default "1,20,50"), after 0.5 s of warm-up. Printed per case: readings/s delivered, CPU µs per
 * reading (process.cpuUsage), and the delivery lag (receipt time − sample time, p50/p99); then the ratios
 * path/direct. Bounded: every stream ends by max_readings or abort; everything started is stopped.
 *
 *   npm run bench:readings [-- --seconds 2] [-- --streams 1,10,50]
 */
import { setMaxListeners } from "node:events";
import { performance } from "node:perf_hooks";
import { parseArgs } from "node:util";
import { create } from "@bufbuild/protobuf";
import { SimulatedAnalog } from "../../src/agent/hardware/analog.ts";
import { sampleStream } from "../../src/agent/hardware/sampler.ts";
import { DeviceKind, DevicesService, ReadingSchema } from "../../src/gen/corral/v1/devices_pb.ts";
import { preciseTimestamp } from "../../src/wire/precise-timestamp.ts";
import { joinWithToken, startTestAgent } from "../../test/helpers/agent.ts";
import { plaintextClient } from "../../test/helpers/clients.ts";
import { startTestController } from "../../test/helpers/controller.ts";

const { values } = parseArgs({
  options: {
    seconds: { type: "string", default: "4" },
    streams: { type: "string", default: "1,20,50" },
  },
});
const seconds = Math.min(30, Math.max(0.5, Number(values.seconds)));
const streamCounts = values.streams
  .split(",")
  .map(Number)
  .filter((n) => Number.isInteger(n) && n > 0 && n <= 200);
const rateHz = 1000;
const warmupMs = 500;

interface CaseResult {
  readings: number;
  seconds: number;
  cpuUsPerReading: number;
  lagP50Ms: number;
  lagP99Ms: number;
}

function percentile(sorted: Float64Array, p: number): number {
  if (sorted.length === 0) return Number.NaN;
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))] ?? Number.NaN;
}

/**
 * Runs `streams` consumers, counting what arrives between warm-up and the end; `consume` gets the callback
 * to report readings (with their sample times) and the signal that ends it.
 */
async function measure(
  streams: number,
  consume: (
    index: number,
    report: (count: number, sampleAtMs: number) => void,
    signal: AbortSignal,
  ) => Promise<void>,
): Promise<CaseResult> {
  const abort = new AbortController();
  // One signal ends every stream of the case (and the samplers under them).
  setMaxListeners(0, abort.signal);
  let counting = false;
  let readings = 0;
  const lags: number[] = [];
  const report = (count: number, sampleAtMs: number) => {
    if (!counting) return;
    readings += count;
    if (lags.length < 200_000) lags.push(performance.timeOrigin + performance.now() - sampleAtMs);
  };
  const running = Array.from({ length: streams }, (_, i) =>
    consume(i, report, abort.signal).catch((error: unknown) => {
      if (!abort.signal.aborted) throw error;
    }),
  );
  await new Promise((resolve) => setTimeout(resolve, warmupMs));
  const cpu0 = process.cpuUsage();
  const t0 = performance.now();
  counting = true;
  await new Promise((resolve) => setTimeout(resolve, seconds * 1000));
  counting = false;
  const elapsed = (performance.now() - t0) / 1000;
  const cpu = process.cpuUsage(cpu0);
  abort.abort();
  await Promise.all(running);
  const sorted = Float64Array.from(lags).sort();
  return {
    readings,
    seconds: elapsed,
    cpuUsPerReading: readings === 0 ? Number.NaN : (cpu.user + cpu.system) / readings,
    lagP50Ms: percentile(sorted, 50),
    lagP99Ms: percentile(sorted, 99),
  };
}

const adc = new SimulatedAnalog();

/** (a) the agent's sampler over the simulated ADC, consumed here, building the same Reading messages. */
function direct(streams: number): Promise<CaseResult> {
  return measure(streams, async (_index, report, signal) => {
    let seq = 0n;
    for await (const batch of sampleStream({
      read: async (at) => {
        const { value, raw } = adc.valueAt(1, at);
        return { value, raw: Uint8Array.of(raw >> 8, raw & 0xff) };
      },
      rateHz,
      maxSamples: 0,
      signal,
      maxPending: 2048,
      maxBatch: 256,
      flushMs: 20,
    })) {
      for (const sample of batch) {
        create(ReadingSchema, {
          device: "wave",
          seq: ++seq,
          time: preciseTimestamp(sample.at),
          value: sample.value,
          raw: sample.raw,
        });
      }
      const last = batch.at(-1);
      if (last !== undefined) report(batch.length, last.at);
    }
  });
}

/** (c) no timer: how fast one core builds readings at all. */
function ceiling(): { rate: number; cpuUsPerReading: number } {
  const t0 = performance.now();
  const cpu0 = process.cpuUsage();
  let n = 0;
  while (performance.now() - t0 < 500) {
    for (let i = 0; i < 1000; i++) {
      const at = Date.now();
      const { value, raw } = adc.valueAt(1, at);
      create(ReadingSchema, {
        device: "wave",
        seq: BigInt(++n),
        time: preciseTimestamp(at),
        value,
        raw: Uint8Array.of(raw >> 8, raw & 0xff),
      });
    }
  }
  const cpu = process.cpuUsage(cpu0);
  return { rate: n / ((performance.now() - t0) / 1000), cpuUsPerReading: (cpu.user + cpu.system) / n };
}

const fmt = (n: number, digits = 0) =>
  Number.isFinite(n)
    ? n.toLocaleString("en-US", { maximumFractionDigits: digits, minimumFractionDigits: digits })
    : "-";

async function main(): Promise<void> {
  process.stdout.write(
    `bench:readings — ${seconds}s per case, ${rateHz} readings/s asked per stream, streams: ${streamCounts.join(", ")}\n`,
  );
  const top = ceiling();
  process.stdout.write(
    `ceiling (tight loop, no timer): ${fmt(top.rate)} readings/s, ${fmt(top.cpuUsPerReading, 2)} µs CPU each\n\n`,
  );

  const cluster = await startTestController();
  const node = await startTestAgent({ name: "bench-node" });
  try {
    await joinWithToken(cluster, node);
    const devices = plaintextClient(DevicesService, cluster.bridgePort);
    await devices.addDevice({
      device: {
        name: "wave",
        nodeId: "bench-node",
        kind: DeviceKind.ANALOG,
        register: 1,
        config: { unit: "mV" },
      },
    });

    const rows: string[][] = [];
    const ratios: string[] = [];
    for (const streams of streamCounts) {
      const a = await direct(streams);
      const b = await measure(streams, async (_index, report, signal) => {
        for await (const batch of devices.watchReadings({ name: "wave", rateHz }, { signal })) {
          const last = batch.readings.at(-1)?.time;
          if (last !== undefined)
            report(batch.readings.length, Number(last.seconds) * 1000 + last.nanos / 1e6);
        }
      });
      const asked = streams * rateHz;
      for (const [label, r] of [
        ["direct (in-process sampler)", a],
        ["through controller (agent → controller → client)", b],
      ] as const) {
        rows.push([
          String(streams),
          label,
          fmt(r.readings / r.seconds),
          `${fmt((100 * r.readings) / r.seconds / asked, 1)}%`,
          fmt(r.cpuUsPerReading, 2),
          `${fmt(r.lagP50Ms, 1)} / ${fmt(r.lagP99Ms, 1)}`,
        ]);
      }
      ratios.push(
        `streams ${streams}: readings/s path/direct = ${fmt(b.readings / b.seconds / (a.readings / a.seconds), 3)}, CPU per reading path/direct = ${fmt(b.cpuUsPerReading / a.cpuUsPerReading, 1)}×`,
      );
    }
    const headers = ["streams", "case", "readings/s", "of asked", "CPU µs/reading", "lag p50 / p99 ms"];
    const widths = headers.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? "").length)));
    const line = (cells: readonly string[]) =>
      cells
        .map((c, i) => c.padEnd(widths[i] ?? 0))
        .join("  ")
        .trimEnd();
    process.stdout.write(`${line(headers)}\n${rows.map(line).join("\n")}\n\n${ratios.join("\n")}\n`);
    await devices.removeDevice({ name: "wave" });
  } finally {
    await node.close();
    await cluster.close();
  }
}

main().then(
  () => process.exit(0),
  (error: unknown) => {
    process.stderr.write(`bench:readings failed: ${error instanceof Error ? error.stack : String(error)}\n`);
    process.exit(1);
  },
);
