/**
 * The load generator: one grpc-js client, raw requests with Buffer serializers (no decoding, so the
 * client's cost per call is the same whatever the server), and server CPU from /proc/<pid>/stat around
 * each measuring window.
 */
import { execFileSync } from "node:child_process";
import { readFileSync } from "node:fs";
import { performance } from "node:perf_hooks";
import * as grpc from "@grpc/grpc-js";

/** One run of load: `settleMs` unmeasured, then a window of `measureMs` or `maxCount` ops, whichever first. */
export interface Window {
  readonly settleMs: number;
  /** 0: only settle (a warm-up). */
  readonly measureMs: number;
  readonly maxCount: number;
}

export interface Slice {
  /** Calls completed or messages received in the window. */
  readonly count: number;
  readonly seconds: number;
  /** Server CPU in the window, µs; null where /proc/<pid>/stat cannot be read. */
  readonly serverCpuUs: number | null;
  /** This (the client) process's CPU in the window, µs. */
  readonly clientCpuUs: number;
  /** Failed calls or streams, warm-up included (streams cancelled when the window closes do not count). */
  readonly errors: number;
  /** Unary only: each call's latency in the window. */
  readonly latenciesMs: Float64Array;
}

const clockTicks = (() => {
  try {
    return Number(execFileSync("getconf", ["CLK_TCK"], { encoding: "utf8" }).trim()) || 100;
  } catch {
    return 100;
  }
})();

/** utime + stime of the whole process (all threads), µs. */
export function processCpuUs(pid: number): number | null {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    return ((Number(fields[11]) + Number(fields[12])) * 1e6) / clockTicks;
  } catch {
    return null;
  }
}

export const raw = (bytes: Buffer): Buffer => bytes;

/** Opens the measuring window after `settleMs`, closes it by time or count, then calls `onStop`. */
class Meter {
  state: "settle" | "measure" | "stopping" = "settle";
  count = 0;
  errors = 0;
  #t0 = 0;
  #cpu0: number | null = null;
  #client0 = process.cpuUsage();
  #timer: NodeJS.Timeout;
  #result: Omit<Slice, "errors" | "latenciesMs"> = { count: 0, seconds: 0, serverCpuUs: 0, clientCpuUs: 0 };

  constructor(
    readonly window: Window,
    readonly pid: number,
    readonly onStop: () => void,
  ) {
    this.#timer = setTimeout(() => this.#open(), window.settleMs);
  }

  #open(): void {
    if (this.window.measureMs <= 0) {
      this.close();
      return;
    }
    this.state = "measure";
    this.#t0 = performance.now();
    this.#cpu0 = processCpuUs(this.pid);
    this.#client0 = process.cpuUsage();
    this.#timer = setTimeout(() => this.close(), this.window.measureMs);
  }

  /** Counts one completed call or received message; closes the window at maxCount. */
  tick(): void {
    if (this.state === "measure" && ++this.count >= this.window.maxCount) this.close();
  }

  close(): void {
    if (this.state === "stopping") return;
    clearTimeout(this.#timer);
    if (this.state === "measure") {
      const cpu1 = processCpuUs(this.pid);
      const client = process.cpuUsage(this.#client0);
      this.#result = {
        count: this.count,
        seconds: (performance.now() - this.#t0) / 1000,
        serverCpuUs: cpu1 === null || this.#cpu0 === null ? null : cpu1 - this.#cpu0,
        clientCpuUs: client.user + client.system,
      };
    }
    this.state = "stopping";
    this.onStop();
  }

  get result(): Omit<Slice, "errors" | "latenciesMs"> {
    return this.#result;
  }
}

/** Unary calls, `concurrency` in flight on one channel, requests taken in turn from `requests`. */
export function runUnary(
  client: grpc.Client,
  path: string,
  requests: readonly Buffer[],
  concurrency: number,
  pid: number,
  window: Window,
): Promise<Slice> {
  return new Promise((resolve) => {
    const latencies = new Float64Array(window.maxCount);
    let inFlight = 0;
    let next = 0;
    const meter = new Meter(window, pid, () => {});
    const issue = () => {
      const request = requests[next++ % requests.length] as Buffer;
      const started = performance.now();
      inFlight++;
      client.makeUnaryRequest(path, raw, raw, request, (error) => {
        inFlight--;
        if (error) meter.errors++;
        else if (meter.state === "measure") {
          latencies[meter.count] = performance.now() - started;
          meter.tick();
        }
        if (meter.state !== "stopping") issue();
        else if (inFlight === 0) {
          resolve({ ...meter.result, errors: meter.errors, latenciesMs: latencies.slice(0, meter.count) });
        }
      });
    };
    for (let i = 0; i < concurrency; i++) issue();
  });
}

/** `streams` server streams open at once, each reopened when it ends, all cancelled when the window closes. */
export function runStreams(
  client: grpc.Client,
  path: string,
  request: Buffer,
  streams: number,
  pid: number,
  window: Window,
): Promise<Slice> {
  return new Promise((resolve) => {
    const open = new Set<grpc.ClientReadableStream<Buffer>>();
    const meter = new Meter(window, pid, () => {
      for (const call of open) call.cancel();
    });
    const start = () => {
      const call = client.makeServerStreamRequest(path, raw, raw, request);
      open.add(call);
      call.on("data", () => meter.tick());
      call.on("error", (error: grpc.ServiceError) => {
        if (!(meter.state === "stopping" && error.code === grpc.status.CANCELLED)) meter.errors++;
      });
      call.on("status", () => {
        open.delete(call);
        if (meter.state !== "stopping") start();
        else if (open.size === 0)
          resolve({ ...meter.result, errors: meter.errors, latenciesMs: new Float64Array() });
      });
    };
    for (let i = 0; i < streams; i++) start();
  });
}
