/**
 * One pipeline run, in a worker thread (isolated from the agent's event loop): builds the block graph,
 * moves packets through bounded in-memory channels, supervises `process` blocks (own process group,
 * no shell), and reports logs and per-block counters to the parent.
 *
 * The run completes by itself once every block is done: sources have sent all their packets, the
 * graph has drained (each finished producer closes its output link), process blocks exited 0, and a
 * udp_receiver got its sender's end marker.
 *
 * Messages to the parent: {type:"ready"} | {type:"logs", entries} (each acked) | {type:"stats", blocks} |
 * {type:"pin", cpu, applied, detail} | {type:"endpoint", block, host, port} | {type:"child", pid, startTime} |
 * {type:"child-exit", pid} | {type:"exit", failed, reason, exitCode}. From the parent: {type:"stop"} | {type:"ack"}.
 */
import { type ChildProcess, execFileSync, spawn } from "node:child_process";
import { createSocket, type Socket } from "node:dgram";
import { readFileSync, readlinkSync } from "node:fs";
import { setPriority } from "node:os";
import { parentPort, workerData } from "node:worker_threads";
import { defaults } from "../defaults.ts";
import { readProcStat } from "../host/process-ledger.ts";
import { launchSpec, type RunAs } from "../host/run-as.ts";
import { Channel } from "./channel.ts";
import type { BlockInstance, PipelineGraph } from "./config.ts";
import { endMarkerCount, isEndMarker, udpEndMarker } from "./udp-marker.ts";

type Level = "debug" | "info" | "warn" | "error";
if (parentPort === null) throw new Error("runtime-worker must run in a worker thread");
const port = parentPort;
const data = workerData as {
  graph: PipelineGraph;
  cpuPin?: number;
  /** Why this CPU, when the node chose it (the pipeline gave none). */
  cpuPinReason?: string;
  /** NanoPing's performance_mode: see `prioritise` and `runSource`. */
  performanceMode?: boolean;
  udpTargets?: Record<string, { host: string; port: number }>;
  /** Who process blocks run as (never root unless the node's config says so): see run-as.ts. */
  runAs: RunAs;
};
const graph = data.graph;
const performanceMode = data.performanceMode ?? true;

/**
 * Log lines go to the parent in batches, at most `maxUnacked` batches in flight: while the parent is
 * behind, lines wait here, and past `logBacklogLimit` waiting lines the process blocks' output is
 * paused (the writer slows down to what the agent takes in; memory stays bounded).
 */
const pendingLogs: { level: Level; message: string }[] = [];
const maxUnacked = 4;
const logBatch = 1000;
const logBacklogLimit = 10_000;
/** How long a finished run waits for its log's readers before it hands over the rest at once. */
const logDrainMs = 5_000;
let unacked = 0;
let flushScheduled = false;
/** Re-evaluates whether each process block's output should be paused. */
const flows = new Set<() => void>();

function flushLogs(force = false): void {
  flushScheduled = false;
  while (pendingLogs.length > 0 && (force || unacked < maxUnacked)) {
    port.postMessage({ type: "logs", entries: pendingLogs.splice(0, logBatch) });
    unacked++;
  }
  for (const check of flows) check();
}

const log = (level: Level, message: string) => {
  pendingLogs.push({ level, message });
  if (!flushScheduled) {
    flushScheduled = true;
    setImmediate(flushLogs);
  }
};
const logsBackedUp = () => pendingLogs.length > logBacklogLimit;

/**
 * At the end of a run, what is still waiting goes out at the parent's pace too (a burst of the last
 * 10 000 lines at once would lap a reader that kept up all along), for at most `withinMs`.
 */
async function drainLogs(withinMs: number): Promise<void> {
  const until = Date.now() + withinMs;
  while ((pendingLogs.length > 0 || unacked > 0) && Date.now() < until) {
    flushLogs();
    await sleep(2);
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
  /** A source's pacing error per packet (ms, |sent − due|), a bounded sample. */
  pacing?: number[];
  /** A process block's nice value as started (inherited from this thread). */
  nice?: number;
  dropped?: number;
  peerSent?: number;
}

let stopping = false;
const port0 = port;
const sockets = new Set<Socket>();
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
  // A datagram's payload on loopback/ethernet without fragmentation.
  return 1472;
};

/**
 * Performance mode's pacing: sleep on a timer until `busyWaitMs` before `due`, then spin on the clock,
 * yielding to the event loop (setImmediate) between looks so other blocks, stop and acks still run.
 * A packet goes out within microseconds of its due time instead of a timer tick late or early, at the
 * cost of one busy CPU while a source is timed (the reason runs are pinned and spread).
 */
async function busyWaitUntil(due: number): Promise<void> {
  const ahead = due - performance.now();
  if (ahead > defaults.pipelines.busyWaitMs) await sleep(ahead - defaults.pipelines.busyWaitMs);
  while (performance.now() < due && !stopping) await yieldLoop();
}

/** Packets: u32 sequence, f64 send time (ms, performance clock + origin), padding. */
async function runSource(block: BlockInstance, c: Counters): Promise<void> {
  if (block.settings.type !== "uniform_traffic_source") return;
  const { output, totalPackets, intervalUs } = block.settings;
  const size = Math.min(block.settings.packetSize || 64, sinkMtu(output));
  const channel = channelOf(output);
  const pacing: number[] = [];
  c.pacing = pacing;
  const start = performance.now();
  for (let seq = 0; seq < totalPackets && !stopping; seq++) {
    const due = start + (seq * intervalUs) / 1000;
    if (performanceMode) await busyWaitUntil(due);
    else {
      // Timer pacing: sleep while more than a timer tick ahead; setTimeout's granularity is ~1 ms.
      const ahead = due - performance.now();
      if (ahead > 1) await sleep(ahead);
      else if (seq % 256 === 255) await yieldLoop();
    }
    const packet = Buffer.alloc(size);
    const sentAt = performance.now();
    if (intervalUs > 0) {
      const error = Math.abs(sentAt - due);
      if (pacing.length < 4096) pacing.push(error);
      else pacing[seq % 4096] = error;
    }
    packet.writeUInt32BE(seq >>> 0, 0);
    packet.writeDoubleBE(performance.timeOrigin + sentAt, 4);
    await channel.push(packet);
    c.packetsSent++;
    c.bytes += size;
    c.lastAt = Date.now();
  }
  log("info", `${block.name}: sent ${c.packetsSent} packets`);
  // Sent everything: the link drains and then tells its reader it is over.
  channel.close();
}

/** Binds, reports its address, and passes each datagram on until its sender's end marker. */
async function runUdpReceiver(block: BlockInstance, c: Counters): Promise<void> {
  if (block.settings.type !== "udp_receiver") return;
  const { bind, port, output } = block.settings;
  const channel = channelOf(output);
  const socket = createSocket({ type: bind.includes(":") ? "udp6" : "udp4", recvBufferSize: 4 << 20 });
  sockets.add(socket);
  await new Promise<void>((resolve, reject) => {
    socket.once("error", reject);
    socket.bind(port, bind, () => {
      socket.off("error", reject);
      resolve();
    });
  });
  const address = socket.address();
  port0.postMessage({ type: "endpoint", block: block.name, host: address.address, port: address.port });
  log("info", `${block.name}: listening on ${address.address}:${address.port}/udp`);
  c.dropped = 0;
  await new Promise<void>((resolve) => {
    socket.on("message", (packet) => {
      if (isEndMarker(packet)) {
        c.peerSent = endMarkerCount(packet);
        c.lost = Math.max(0, c.peerSent - c.packetsReceived);
        resolve();
        return;
      }
      c.packetsReceived++;
      c.bytes += packet.length;
      c.lastAt = Date.now();
      if (!channel.offer(packet)) c.dropped = (c.dropped ?? 0) + 1;
    });
    socket.on("close", () => resolve());
  });
  log("info", `${block.name}: received ${c.packetsReceived} packets (${c.lost} lost on the network)`);
  socket.close();
  sockets.delete(socket);
  channel.close();
}

/** Sends each packet of its input as one datagram; at the end, the end marker (three times). */
async function runUdpSender(block: BlockInstance, c: Counters): Promise<void> {
  if (block.settings.type !== "udp_sender") return;
  const target = data.udpTargets?.[block.name];
  if (target === undefined) throw new Error(`${block.name}: no address for its target`);
  const channel = channelOf(block.settings.input);
  const socket = createSocket(target.host.includes(":") ? "udp6" : "udp4");
  sockets.add(socket);
  socket.on("error", (error) => log("warn", `${block.name}: ${error.message}`));
  const send = (packet: Buffer) =>
    new Promise<void>((resolve) => {
      socket.send(packet, target.port, target.host, (error) => {
        if (error) c.dropped = (c.dropped ?? 0) + 1;
        resolve();
      });
    });
  c.dropped = 0;
  log("info", `${block.name}: sending to ${target.host}:${target.port}/udp`);
  for (let packet = await channel.pull(); packet !== undefined; packet = await channel.pull()) {
    await send(packet);
    c.packetsSent++;
    c.bytes += packet.length;
    c.lastAt = Date.now();
  }
  if (!stopping) {
    for (let i = 0; i < 3; i++) {
      await send(udpEndMarker(c.packetsSent));
      await sleep(10);
    }
  }
  log("info", `${block.name}: sent ${c.packetsSent} datagrams`);
  socket.close();
  sockets.delete(socket);
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
  const file = argv[0] as string;
  // Clean env, the run-as user, and a parent-death signal: if this thread ends (or the agent is
  // killed), the program is killed with it. The parent also records the group in the data dir.
  const launch = launchSpec({
    argv,
    runAs: data.runAs,
    env,
    ...(cwd === undefined ? {} : { cwd }),
  });
  return new Promise((resolve) => {
    const child = spawn(launch.file, launch.args, {
      ...launch.options,
      detached: true,
      stdio: ["ignore", "pipe", "pipe"],
      shell: false,
    });
    children.add(child);
    if (child.pid !== undefined) {
      c.pid = child.pid;
      const nice = niceOf(child.pid);
      if (nice !== undefined) c.nice = nice;
      // The parent kills the group too if this thread cannot (terminated, stuck).
      // Read now, while the child is at worst an unreaped zombie: the parent records the group with it.
      const startTime = readProcStat(child.pid)?.startTime;
      port.postMessage({ type: "child", pid: child.pid, startTime });
    }
    log("info", `${block.name}: started ${file} (pid ${child.pid ?? "?"})`);
    const channel = output === undefined ? undefined : channelOf(output);
    // Lines the output link had no room for; while any wait, the process's output is paused.
    const backlog: Buffer[] = [];
    let draining = false;
    let paused = false;
    const flow = () => {
      const pause = backlog.length > 0 || logsBackedUp();
      if (pause === paused) return;
      paused = pause;
      for (const stream of [child.stdout, child.stderr]) {
        if (pause) stream?.pause();
        else stream?.resume();
      }
    };
    flows.add(flow);
    const forward = async () => {
      draining = true;
      for (
        let packet = backlog.shift();
        packet !== undefined && channel !== undefined;
        packet = backlog.shift()
      )
        await channel.push(packet);
      draining = false;
      flow();
    };
    const lines = (level: Level) => {
      let rest = "";
      return (chunk: Buffer) => {
        const parts = (rest + chunk.toString("utf8")).split("\n");
        rest = parts.pop() ?? "";
        for (const line of parts) {
          log(level, `${block.name}: ${line}`);
          c.packetsSent++;
          c.bytes += line.length;
          if (channel === undefined) continue;
          const packet = Buffer.from(line);
          if (backlog.length > 0 || !channel.offer(packet)) backlog.push(packet);
        }
        if (backlog.length > 0 && !draining) void forward();
        flow();
      };
    };
    child.stdout?.on("data", lines("info"));
    child.stderr?.on("data", lines("warn"));
    child.on("error", (error) => {
      children.delete(child);
      channel?.close();
      log("error", `${block.name}: ${error.message}`);
      resolve(127);
    });
    // "close": exited and its output read to the end.
    child.on("close", (code, signal) => {
      flows.delete(flow);
      children.delete(child);
      if (child.pid !== undefined) port.postMessage({ type: "child-exit", pid: child.pid });
      channel?.close();
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

/** A source's pacing, as telemetry: how it paces, and how far from due its packets went out. */
function pacingStats(errors: readonly number[]): Record<string, number | string> {
  const sorted = [...errors].sort((a, b) => a - b);
  return {
    pacing: performanceMode ? "busy-wait" : "timer",
    pacing_error_p50_ms: percentile(sorted, 50),
    pacing_error_p99_ms: percentile(sorted, 99),
  };
}

/** Field 19 of /proc/<pid>/stat; undefined when it cannot be read (gone, not Linux). */
function niceOf(pid: number): number | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    const nice = Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[16]);
    return Number.isInteger(nice) ? nice : undefined;
  } catch {
    return undefined;
  }
}

/**
 * performance_mode's priority: this worker thread (and so every process block it starts: fork copies
 * the calling thread's nice value, as it does its CPU mask) at `performanceNice` when on, where the
 * node may raise priority; at `backgroundNice` when off. Refused raises leave the agent's priority
 * and say so in the run's log.
 */
function prioritise(): void {
  const wanted = performanceMode ? defaults.pipelines.performanceNice : defaults.pipelines.backgroundNice;
  const mode = `performance_mode ${performanceMode ? "on" : "off"}`;
  const pacing = performanceMode ? "busy-wait pacing" : "timer pacing";
  try {
    const tid = Number(readlinkSync("/proc/thread-self").split("/").pop());
    // Linux's setpriority(PRIO_PROCESS, tid) sets one thread's nice value.
    setPriority(tid, wanted);
    log("info", `${mode}: ${pacing}, worker thread ${tid} at nice ${wanted}`);
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code ?? (error as Error).message;
    log(
      "warn",
      `${mode}: ${pacing}; nice ${wanted} not applied (${code}): the run keeps the agent's priority`,
    );
  }
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
      ...(c.nice === undefined ? {} : { nice: c.nice }),
      ...(c.pacing === undefined ? {} : pacingStats(c.pacing)),
      ...(c.dropped === undefined ? {} : { dropped: c.dropped }),
      ...(c.peerSent === undefined ? {} : { peer_sent: c.peerSent }),
    };
  }
  port.postMessage({ type: "stats", blocks });
}

/**
 * Pins this worker thread to the CPU (sched_setaffinity through `taskset -p` on the thread's id);
 * process blocks started afterwards inherit it (fork copies the calling thread's mask).
 */
function pin(cpu: number): void {
  let detail: string;
  let applied = false;
  try {
    const online = onlineCpus();
    if (online !== undefined && !online.has(cpu)) {
      detail = `cpu ${cpu} is not online (online: ${[...online].join(",")})`;
    } else {
      const tid = readlinkSync("/proc/thread-self").split("/").pop() ?? "";
      execFileSync("taskset", ["-p", "-c", String(cpu), tid], { stdio: "ignore", timeout: 5_000 });
      const allowed = /Cpus_allowed_list:\s*(\S+)/.exec(
        readFileSync(`/proc/thread-self/status`, "utf8"),
      )?.[1];
      applied = allowed === String(cpu);
      detail = `taskset -p -c ${cpu} ${tid} (worker thread; process blocks inherit it): Cpus_allowed_list ${allowed ?? "?"}`;
      if (data.cpuPinReason !== undefined) detail = `${data.cpuPinReason}; ${detail}`;
    }
  } catch (error) {
    detail = `not applied: ${(error as Error).message.split("\n")[0]}`;
  }
  port.postMessage({ type: "pin", cpu, applied, detail });
  log(applied ? "info" : "warn", `cpu_pin ${cpu}: ${detail}`);
}

function onlineCpus(): Set<number> | undefined {
  try {
    const text = readFileSync("/sys/devices/system/cpu/online", "utf8").trim();
    const cpus = new Set<number>();
    for (const part of text.split(",")) {
      const [a, b] = part.split("-").map(Number) as [number, number | undefined];
      for (let n = a; n <= (b ?? a); n++) cpus.add(n);
    }
    return cpus;
  } catch {
    return undefined;
  }
}

async function main(): Promise<void> {
  if (data.cpuPin !== undefined) pin(data.cpuPin);
  prioritise();
  const tasks: Promise<unknown>[] = [];
  const processes: Promise<number | null>[] = [];
  for (const block of graph.blocks) {
    const c = counterFor(block);
    const type = block.settings.type;
    if (type === "uniform_traffic_source") tasks.push(runSource(block, c));
    else if (type === "traffic_sink") tasks.push(runSink(block, c));
    else if (type === "udp_receiver") tasks.push(runUdpReceiver(block, c));
    else if (type === "udp_sender") tasks.push(runUdpSender(block, c));
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
    else if (message.type === "ack") {
      unacked = Math.max(0, unacked - 1);
      flushLogs();
    }
  });
  // A process exiting non-zero fails the run at once; otherwise it ends when every block is done.
  const failedProcess = new Promise<number>((resolve) => {
    for (const p of processes) void p.then((code) => code !== 0 && resolve(code ?? -1));
  });
  const allDone = Promise.all([...tasks, ...processes]);
  const outcome = await Promise.race([
    stopped.then(() => ({ kind: "stop" as const })),
    failedProcess.then((code) => ({ kind: "process" as const, code })),
    allDone.then(() => ({ kind: "done" as const })),
  ]);
  stopping = true;
  let failed = false;
  let reason = "stopped";
  let exitCode: number | undefined;
  if (outcome.kind === "process") {
    failed = true;
    exitCode = outcome.code;
    reason = `a process exited ${outcome.code}`;
  } else if (outcome.kind === "done") {
    exitCode = 0;
    reason = "completed";
  }
  killChildren("SIGTERM");
  for (const channel of channels.values()) channel.close();
  for (const socket of sockets) socket.close();
  const grace = Date.now() + 2000;
  while (children.size > 0 && Date.now() < grace) await sleep(20);
  killChildren("SIGKILL");
  await Promise.race([Promise.allSettled(tasks), sleep(500)]);
  clearInterval(ticker);
  report();
  await drainLogs(logDrainMs);
  flushLogs(true);
  port.postMessage({ type: "exit", failed, reason, ...(exitCode === undefined ? {} : { exitCode }) });
  port.close();
}

main().catch((error: unknown) => {
  stopping = true;
  killChildren("SIGKILL");
  report();
  flushLogs(true);
  port.postMessage({ type: "exit", failed: true, reason: `block error: ${(error as Error).message}` });
  port.close();
});
