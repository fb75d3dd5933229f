/**
 * Simulated agents and the load they make. Every agent has a grpc-js channel of its own (its own TLS
 * connection, with its own client certificate) and heartbeats with one call in flight: as soon as an
 * answer comes, the next call goes. Requests are raw bytes with pass-through serializers, so the client's
 * cost per call is the same whichever server answers.
 */
import { performance } from "node:perf_hooks";
import { create, fromBinary, toBinary } from "@bufbuild/protobuf";
import * as grpc from "@grpc/grpc-js";
import { HeartbeatRequestSchema } from "../../src/gen/corral/v1/agent_pb.ts";
import { JoinRequestSchema, JoinResponseSchema } from "../../src/gen/corral/v1/join_pb.ts";
import { createKeyAndCsr } from "../../src/security/node-key.ts";

export const heartbeatPath = "/corral.v1.AgentService/Heartbeat";
export const heartbeatStreamPath = "/corral.v1.AgentService/HeartbeatStream";
const joinPath = "/corral.v1.JoinService/Join";
/** No call may hang the bench: each has this long to answer. */
export const callTimeoutMs = 10_000;

export const raw = (bytes: Buffer): Buffer => bytes;

/** What a real agent sends (controller-link.ts): its load figures. */
export const heartbeatRequest = Buffer.from(
  toBinary(HeartbeatRequestSchema, create(HeartbeatRequestSchema, { cpuUsage: 0.25, memoryUsedMb: 512n })),
);

export interface Tls {
  readonly caPem: string;
  readonly certificatePem?: string;
  readonly privateKeyPem?: string;
}

/**
 * A channel of its own (no subchannel shared with other agents): one TLS connection per agent. The TLS
 * name is `localhost` (both servers' certificates carry it): grpc-js would otherwise send the IP address
 * as SNI, which Node warns about.
 */
export function connect(address: string, tls: Tls): grpc.Client {
  const credentials = grpc.credentials.createSsl(
    Buffer.from(tls.caPem),
    tls.privateKeyPem === undefined ? null : Buffer.from(tls.privateKeyPem),
    tls.certificatePem === undefined ? null : Buffer.from(tls.certificatePem),
  );
  return new grpc.Client(address, credentials, {
    "grpc.use_local_subchannel_pool": 1,
    "grpc.ssl_target_name_override": "localhost",
  });
}

export function unary(client: grpc.Client, path: string, request: Buffer): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    client.makeUnaryRequest(
      path,
      raw,
      raw,
      request,
      { deadline: Date.now() + callTimeoutMs },
      (error, response) => {
        if (error || response === undefined) reject(error ?? new Error(`${path}: no response`));
        else resolve(response);
      },
    );
  });
}

export interface Joined {
  readonly nodeId: string;
  readonly certificatePem: string;
  readonly privateKeyPem: string;
  /** The Join call itself, ms (key and CSR not included). */
  readonly joinMs: number;
  /** Join attempts refused with ABORTED (the token's use count raced) before one went through. */
  readonly retries: number;
}

/**
 * Joins as a real agent does (controller-link.ts): a fresh P-256 key and CSR, then JoinService/Join
 * with the token over TLS without a client certificate; the answer is the node's certificate.
 */
export async function joinCluster(
  address: string,
  caPem: string,
  name: string,
  token: string,
): Promise<Joined> {
  const key = await createKeyAndCsr(name);
  const request = Buffer.from(
    toBinary(
      JoinRequestSchema,
      create(JoinRequestSchema, {
        nodeId: crypto.randomUUID(),
        name,
        csrPem: key.csrPem,
        token,
        resources: { cpuCores: 2, memoryMb: 2048n },
        version: "heartbeat-bench",
        labels: { bench: "heartbeat" },
      }),
    ),
  );
  const client = connect(address, { caPem });
  try {
    for (let attempt = 0; ; attempt++) {
      const started = performance.now();
      try {
        const response = fromBinary(JoinResponseSchema, await unary(client, joinPath, request));
        if (response.certificatePem === "") throw new Error(`${name}: the controller sent no certificate`);
        return {
          nodeId: response.nodeId,
          certificatePem: response.certificatePem,
          privateKeyPem: key.privateKeyPem,
          joinMs: performance.now() - started,
          retries: attempt,
        };
      } catch (error) {
        // Redeeming a token is compare-and-swap on its use count; joins racing for it may be told to retry.
        if ((error as grpc.ServiceError).code !== grpc.status.ABORTED || attempt >= 5) throw error;
        await new Promise((resolve) => setTimeout(resolve, 20 * (attempt + 1)));
      }
    }
  } finally {
    client.close();
  }
}

/** Runs `task` over `items` with at most `limit` at once; the first failure is thrown once all settled. */
export async function mapLimit<T, R>(
  items: readonly T[],
  limit: number,
  task: (item: T, index: number) => Promise<R>,
): Promise<R[]> {
  const results: R[] = new Array(items.length);
  const failures: unknown[] = [];
  let next = 0;
  const worker = async () => {
    while (next < items.length) {
      const index = next++;
      try {
        results[index] = await task(items[index] as T, index);
      } catch (error) {
        failures.push(error);
      }
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
  if (failures.length > 0) {
    throw new AggregateError(
      failures,
      `${failures.length} of ${items.length} failed: ${String(failures[0])}`,
    );
  }
  return results;
}

/** Heartbeats a target has answered over all runs, settle included (set against its store revisions). */
export interface Counter {
  completed: number;
}

/** One run of load: `settleMs` unmeasured, then a window of `measureMs` or `maxCount` heartbeats, whichever first. */
export interface Window {
  readonly settleMs: number;
  /** 0: only settle (a warm-up). */
  readonly measureMs: number;
  readonly maxCount: number;
}

export interface Slice {
  /** Heartbeats answered in the window. */
  readonly count: number;
  readonly seconds: number;
  /** Server CPU in the window, µs; null where it could not be read. */
  readonly serverCpuUs: number | null;
  /** This (the client) process's CPU in the window, µs. */
  readonly clientCpuUs: number;
  /** Failed calls, settle included. */
  readonly errors: number;
  /** The first few failures, for the report. */
  readonly errorSamples: readonly string[];
  /** Each heartbeat's latency in the window, ms. */
  readonly latenciesMs: Float64Array;
}

/**
 * How an agent heartbeats: a unary call each ("call", AgentService/Heartbeat), or a message each on one
 * long-lived stream ("stream", AgentService/HeartbeatStream — what corral's agent does once a call went
 * through, src/agent/heartbeat-stream.ts).
 */
export type HeartbeatMode = "call" | "stream";

type Failure = { readonly code?: number; readonly details?: string; readonly message: string };

/** Sends one heartbeat per `send`; its answer or failure goes to `done`. */
interface Sender {
  send(done: (error: Failure | undefined) => void): void;
  close(): void;
}

function callSender(agent: grpc.Client): Sender {
  return {
    send: (done) =>
      agent.makeUnaryRequest(
        heartbeatPath,
        raw,
        raw,
        heartbeatRequest,
        { deadline: Date.now() + callTimeoutMs },
        (error) => done(error ?? undefined),
      ),
    close: () => undefined,
  };
}

/** One bidi stream per agent, opened on the first heartbeat and again after a failure. */
function streamSender(agent: grpc.Client): Sender {
  let call: grpc.ClientDuplexStream<Buffer, Buffer> | undefined;
  let pending: ((error: Failure | undefined) => void) | undefined;
  let timer: NodeJS.Timeout | undefined;
  const settle = (error: Failure | undefined) => {
    clearTimeout(timer);
    const done = pending;
    pending = undefined;
    done?.(error);
  };
  const open = () => {
    const opened = agent.makeBidiStreamRequest(heartbeatStreamPath, raw, raw, {});
    const lost = (error: Failure) => {
      if (call === opened) call = undefined;
      settle(error);
    };
    opened.on("data", () => settle(undefined));
    opened.on("error", lost);
    opened.on("end", () => lost({ message: "the controller ended the stream" }));
    return opened;
  };
  return {
    send(done) {
      call ??= open();
      pending = done;
      const sent = call;
      // No heartbeat may hang the bench: an answer that does not come in time cancels the stream.
      timer = setTimeout(() => sent.cancel(), callTimeoutMs);
      sent.write(heartbeatRequest);
    },
    close() {
      call?.end();
      call = undefined;
    },
  };
}

/**
 * Every agent heartbeats, one heartbeat in flight each, for `settleMs` and then the measuring window;
 * after it closes no agent sends another, and the slice ends when the last answer is in (streams are
 * then closed). A failed heartbeat is counted and retried after 100 ms.
 */
export function runSlice(
  agents: readonly grpc.Client[],
  serverCpuUs: () => Promise<number | null>,
  window: Window,
  counter: Counter,
  mode: HeartbeatMode = "call",
): Promise<Slice> {
  return new Promise((resolve, reject) => {
    const senders = new Map(
      agents.map((agent) => [agent, mode === "stream" ? streamSender(agent) : callSender(agent)]),
    );
    const latencies = new Float64Array(window.maxCount);
    const errorSamples: string[] = [];
    let state: "settle" | "opening" | "measure" | "stopping" = "settle";
    let count = 0;
    let errors = 0;
    let inFlight = 0;
    let t0 = 0;
    let cpu0: number | null = null;
    let client0 = process.cpuUsage();
    let measured: Omit<Slice, "errors" | "errorSamples" | "latenciesMs"> = {
      count: 0,
      seconds: 0,
      serverCpuUs: 0,
      clientCpuUs: 0,
    };
    let closing: Promise<void> | undefined;
    let timer: NodeJS.Timeout | undefined;

    const finishIfDone = () => {
      if (state !== "stopping" || inFlight > 0 || closing === undefined) return;
      for (const sender of senders.values()) sender.close();
      closing.then(
        () => resolve({ ...measured, errors, errorSamples, latenciesMs: latencies.slice(0, measured.count) }),
        reject,
      );
    };
    const close = () => {
      if (state === "stopping") return;
      clearTimeout(timer);
      const wasMeasuring = state === "measure";
      state = "stopping";
      const seconds = (performance.now() - t0) / 1000;
      const client = process.cpuUsage(client0);
      const finalCount = count;
      closing = wasMeasuring
        ? serverCpuUs().then((cpu1) => {
            measured = {
              count: finalCount,
              seconds,
              serverCpuUs: cpu1 === null || cpu0 === null ? null : cpu1 - cpu0,
              clientCpuUs: client.user + client.system,
            };
          })
        : Promise.resolve();
      finishIfDone();
    };
    const open = () => {
      if (window.measureMs <= 0) {
        close();
        return;
      }
      state = "opening";
      serverCpuUs().then((cpu) => {
        if (state !== "opening") return;
        cpu0 = cpu;
        t0 = performance.now();
        client0 = process.cpuUsage();
        state = "measure";
        timer = setTimeout(close, window.measureMs);
      }, reject);
    };

    const beat = (agent: grpc.Client) => {
      const started = performance.now();
      inFlight++;
      (senders.get(agent) as Sender).send((error) => {
        inFlight--;
        if (error) {
          errors++;
          if (errorSamples.length < 5)
            errorSamples.push(`${error.code ?? ""} ${error.details || error.message}`);
        } else {
          counter.completed++;
          if (state === "measure") {
            latencies[count] = performance.now() - started;
            if (++count >= window.maxCount) close();
          }
        }
        if (state === "stopping") finishIfDone();
        else if (error) setTimeout(() => (state === "stopping" ? finishIfDone() : beat(agent)), 100);
        else beat(agent);
      });
    };

    timer = setTimeout(open, window.settleMs);
    for (const agent of agents) beat(agent);
  });
}
