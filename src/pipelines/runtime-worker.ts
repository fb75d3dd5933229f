/**
 * One pipeline run, in a worker thread (isolated from the agent's event loop): builds the block graph,
 * moves packets through bounded in-memory channels, supervises `process` blocks (own process group,
 * no shell), and reports logs and per-block counters to the parent.
 *
 * Messages to the parent: {type:"ready"} | {type:"log", level, message} |
 * {type:"stats", blocks} | {type:"exit", failed, reason}. From the parent: {type:"stop"}.
 */
import { type ChildProcess, spawn } from "node:child_process";
import { parentPort, workerData } from "node:worker_threads";
import type { BlockInstance, PipelineGraph } from "./config.ts";

type Level = "debug" | "info" | "warn" | "error";
if (parentPort === null) throw new Error("runtime-worker must run in a worker thread");
const port = parentPort;
const graph = (workerData as { graph: PipelineGraph }).graph;

const log = (level: Level, message: string) => port.postMessage({ type: "log", level, message });

/** A bounded FIFO of packets: `push` waits while full, `pull` waits while empty. */
class Channel {
  readonly #items: Buffer[] = [];
  readonly #capacity: number;
  #space: (() => void) | undefined;
  #data: (() => void) | undefined;
  closed = false;
  constructor(capacity: number) {
    this.#capacity = capacity;
  }
  async push(packet: Buffer): Promise<void> {
    while (this.#items.length >= this.#capacity && !this.closed)
      await new Promise<void>((resolve) => {
        this.#space = resolve;
      });
    this.#items.push(packet);
    const wake = this.#data;
    this.#data = undefined;
    wake?.();
  }
  async pull(): Promise<Buffer | undefined> {
    while (this.#items.length === 0) {
      if (this.closed) return undefined;
      await new Promise<void>((resolve) => {
        this.#data = resolve;
      });
    }
    const packet = this.#items.shift();
    const wake = this.#space;
    this.#space = undefined;
    wake?.();
    return packet;
  }
  close(): void {
    this.closed = true;
    for (const wake of [this.#space, this.#data]) wake?.();
    this.#space = undefined;
    this.#data = undefined;
  }
}

interface Counters {
  type: string;
  packetsSent: number;
  packetsReceived: number;
  bytes: number;
  lost: number;
  reordered: number;
  latencies: number[];
  startedAt: number;
  lastAt: number;
  exitCode?: number | null;
  pid?: number;
}

let stopping = false;
const channels = new Map<string, Channel>();
const counters = new Map<string, Counters>();
const children = new Set<ChildProcess>();
const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));
const yieldLoop = () => new Promise<void>((resolve) => setImmediate(resolve));

function counterFor(block: BlockInstance): Counters {
  const c: Counters = {
    type: block.settings.type,
    packetsSent: 0,
    packetsReceived: 0,
    bytes: 0,
    lost: 0,
    reordered: 0,
    latencies: [],
    startedAt: Date.now(),
    lastAt: 0,
  };
  counters.set(block.name, c);
  return c;
}

function channelOf(link: string): Channel {
  let channel = channels.get(link);
  if (channel === undefined) {
    channel = new Channel(1024);
    channels.set(link, channel);
  }
  return channel;
}

const sinkMtu = (link: string): number => {
  for (const block of graph.blocks)
    if (block.settings.type === "traffic_sink" && block.settings.input === link) return block.settings.mtu;
  return 1500;
};

/** Packets: u32 sequence, f64 send time (ms, performance clock + origin), padding. */
async function runSource(block: BlockInstance, c: Counters): Promise<void> {
  if (block.settings.type !== "uniform_traffic_source") return;
  const { output, totalPackets, intervalUs } = block.settings;
  const size = Math.min(block.settings.packetSize || 64, sinkMtu(output));
  const channel = channelOf(output);
  const start = performance.now();
  for (let seq = 0; seq < totalPackets && !stopping; seq++) {
    const due = start + (seq * intervalUs) / 1000;
    const ahead = due - performance.now();
    if (ahead > 1) await sleep(ahead);
    else if (seq % 256 === 255) await yieldLoop();
    const packet = Buffer.alloc(size);
    packet.writeUInt32BE(seq >>> 0, 0);
    packet.writeDoubleBE(performance.timeOrigin + performance.now(), 4);
    await channel.push(packet);
    c.packetsSent++;
    c.bytes += size;
    c.lastAt = Date.now();
  }
  log("info", `${block.name}: sent ${c.packetsSent} packets`);
}

async function runSink(block: BlockInstance, c: Counters): Promise<void> {
  if (block.settings.type !== "traffic_sink") return;
  const channel = channelOf(block.settings.input);
  let highest = -1;
  for (let packet = await channel.pull(); packet !== undefined; packet = await channel.pull()) {
    c.packetsReceived++;
    c.bytes += packet.length;
    c.lastAt = Date.now();
    if (packet.length >= 12) {
      const seq = packet.readUInt32BE(0);
      const sent = packet.readDoubleBE(4);
      if (seq < highest) c.reordered++;
      else highest = seq;
      c.lost = Math.max(0, highest + 1 - c.packetsReceived);
      const latency = performance.timeOrigin + performance.now() - sent;
      if (c.latencies.length < 4096) c.latencies.push(latency);
      else c.latencies[c.packetsReceived % 4096] = latency;
    }
  }
}

/** Resolves with the exit code (null when killed by a signal). */
function runProcess(block: BlockInstance, c: Counters): Promise<number | null> {
  if (block.settings.type !== "process") return Promise.resolve(0);
  const { argv, env, cwd, output } = block.settings;
  const [file, ...args] = argv as [string, ...string[]];
  return new Promise((resolve) => {
    const child = spawn(file, args, {
      ...(cwd === undefined ? {} : { cwd }),
      env: { PATH: process.env.PATH ?? "/usr/bin:/bin", ...env },
      detached: true,
      stdio: ["ignore", "pipe", "pipe"],
      shell: false,
    });
    children.add(child);
    if (child.pid !== undefined) c.pid = child.pid;
    log("info", `${block.name}: started ${file} (pid ${child.pid ?? "?"})`);
    const channel = output === undefined ? undefined : channelOf(output);
    const lines = (level: Level) => {
      let rest = "";
      return (chunk: Buffer) => {
        const parts = (rest + chunk.toString("utf8")).split("\n");
        rest = parts.pop() ?? "";
        for (const line of parts) {
          log(level, `${block.name}: ${line}`);
          c.packetsSent++;
          c.bytes += line.length;
          if (channel !== undefined) void channel.push(Buffer.from(line));
        }
      };
    };
    child.stdout?.on("data", lines("info"));
    child.stderr?.on("data", lines("warn"));
    child.on("error", (error) => {
      children.delete(child);
      log("error", `${block.name}: ${error.message}`);
      resolve(127);
    });
    child.on("exit", (code, signal) => {
      children.delete(child);
      c.exitCode = code;
      log(code === 0 ? "info" : "error", `${block.name}: exited ${code ?? signal}`);
      resolve(code);
    });
  });
}

function killChildren(signal: NodeJS.Signals): void {
  for (const child of children) {
    if (child.pid === undefined) continue;
    try {
      process.kill(-child.pid, signal);
    } catch {
      // already gone
    }
  }
}

function percentile(sorted: readonly number[], p: number): number {
  if (sorted.length === 0) return 0;
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))] as number;
}

function report(): void {
  const blocks: Record<string, Record<string, number | string>> = {};
  for (const [name, c] of counters) {
    const sorted = [...c.latencies].sort((a, b) => a - b);
    const seconds = Math.max(0.001, ((c.lastAt || Date.now()) - c.startedAt) / 1000);
    blocks[name] = {
      type: c.type,
      packets_sent: c.packetsSent,
      packets_received: c.packetsReceived,
      bytes: c.bytes,
      lost: c.lost,
      reordered: c.reordered,
      latency_p50_ms: percentile(sorted, 50),
      latency_p99_ms: percentile(sorted, 99),
      throughput_pps: (c.type === "traffic_sink" ? c.packetsReceived : c.packetsSent) / seconds,
      ...(c.pid === undefined ? {} : { pid: c.pid }),
    };
  }
  port.postMessage({ type: "stats", blocks });
}

async function main(): Promise<void> {
  const tasks: Promise<unknown>[] = [];
  const processes: Promise<number | null>[] = [];
  for (const block of graph.blocks) {
    const c = counterFor(block);
    if (block.settings.type === "uniform_traffic_source") tasks.push(runSource(block, c));
    else if (block.settings.type === "traffic_sink") tasks.push(runSink(block, c));
    else processes.push(runProcess(block, c));
  }
  port.postMessage({ type: "ready" });
  log("info", `run started: ${graph.blocks.length} blocks, ${graph.links.length} links`);
  const ticker = setInterval(report, 1000);
  let stop: () => void = () => {};
  const stopped = new Promise<void>((resolve) => {
    stop = resolve;
  });
  port.on("message", (message: { type: string }) => {
    if (message.type === "stop") stop();
  });
  let failed = false;
  let reason = "stopped";
  const firstExit = processes.length === 0 ? new Promise<never>(() => {}) : Promise.race(processes);
  const outcome = await Promise.race([stopped.then(() => "stop" as const), firstExit]);
  stopping = true;
  if (outcome !== "stop") {
    failed = outcome !== 0;
    reason = failed ? `a process exited ${outcome}` : "process finished";
  }
  killChildren("SIGTERM");
  for (const channel of channels.values()) channel.close();
  const grace = Date.now() + 2000;
  while (children.size > 0 && Date.now() < grace) await sleep(20);
  killChildren("SIGKILL");
  await Promise.race([Promise.allSettled(tasks), sleep(500)]);
  clearInterval(ticker);
  report();
  port.postMessage({ type: "exit", failed, reason });
  port.close();
}

main().catch((error: unknown) => {
  stopping = true;
  killChildren("SIGKILL");
  port.postMessage({ type: "exit", failed: true, reason: `block error: ${(error as Error).message}` });
  port.close();
});
