import { type ChildProcess, spawn } from "node:child_process";
import { writeFile } from "node:fs/promises";
import { join } from "node:path";

/** bin/corral.js: the real CLI, run as a separate node process. */
export const corralBin = join(import.meta.dirname, "../../bin/corral.js");

/**
 * The test's environment without the caller's CORRAL_* settings (so a developer's shell cannot steer a
 * test), plus `extra`.
 */
export function cleanCorralEnv(extra: Readonly<Record<string, string>> = {}): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [key, value] of Object.entries(process.env)) if (!key.startsWith("CORRAL_")) env[key] = value;
  return { ...env, ...extra };
}

/** How one run of the CLI ended. */
export interface CorralRun {
  /** The exit status; -1 when it was killed (by the time limit or a signal). */
  readonly code: number;
  readonly stdout: string;
  readonly stderr: string;
  /** True when it ran past `timeoutMs` and was killed. */
  readonly timedOut: boolean;
}

export interface RunCorralOptions {
  /** Added to the cleaned environment (CORRAL_* of the caller removed). */
  readonly env?: Readonly<Record<string, string>>;
  /** Written to the CLI's stdin, which is then closed; without it stdin is /dev/null. */
  readonly stdin?: string;
  /** Killed (SIGKILL) past this; default 30 s. */
  readonly timeoutMs?: number;
}

/** Runs the real CLI (`node bin/corral.js …args`) to completion and reports how it exited. */
export function runCorral(args: readonly string[], options: RunCorralOptions = {}): Promise<CorralRun> {
  const timeoutMs = options.timeoutMs ?? 30_000;
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [corralBin, ...args], {
      stdio: [options.stdin === undefined ? "ignore" : "pipe", "pipe", "pipe"],
      env: cleanCorralEnv(options.env),
    });
    let stdout = "";
    let stderr = "";
    let timedOut = false;
    child.stdout?.setEncoding("utf8").on("data", (chunk: string) => {
      stdout += chunk;
    });
    child.stderr?.setEncoding("utf8").on("data", (chunk: string) => {
      stderr += chunk;
    });
    if (options.stdin !== undefined) child.stdin?.end(options.stdin);
    const timer = setTimeout(() => {
      timedOut = true;
      child.kill("SIGKILL");
    }, timeoutMs);
    const finish = (code: number) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr, timedOut });
    };
    child.once("error", (error) => {
      stderr += String(error);
      finish(-1);
    });
    child.once("close", (code) => finish(code ?? -1));
  });
}

/** A corral process (controller or agent) started by a test; its output is kept for failure messages. */
export interface CorralProcess {
  readonly child: ChildProcess;
  /** Everything written to stdout so far. */
  readonly stdout: () => string;
  /** Everything written to stderr so far. */
  readonly stderr: () => string;
  /** Waits for a pattern on stdout, bounded; the error quotes what was seen. */
  waitForOutput(pattern: RegExp, timeoutMs?: number): Promise<RegExpExecArray>;
  /** Sends `signal` and waits (bounded) for the exit; SIGKILL if the process outlives the wait. */
  stop(
    signal?: NodeJS.Signals,
    timeoutMs?: number,
  ): Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  readonly exited: boolean;
}

/**
 * Every child started here until `killAll` reaps it: an `after` hook calls `killAll` so that no process
 * outlives a failed test.
 */
export class CorralProcesses {
  readonly #children = new Set<CorralProcess>();
  readonly #bin: string;
  readonly #env: NodeJS.ProcessEnv | undefined;

  /** `bin`: another corral's bin/corral.js (an installed package's); `env`: the children's environment. */
  constructor(options: { bin?: string; env?: NodeJS.ProcessEnv } = {}) {
    this.#bin = options.bin ?? corralBin;
    this.#env = options.env;
  }

  /** Starts `corral …args`, with the test's environment unless `env` is given (e.g. `cleanCorralEnv()`). */
  start(args: readonly string[], env?: NodeJS.ProcessEnv): CorralProcess {
    const childEnv = env ?? this.#env;
    const child = spawn(process.execPath, [this.#bin, ...args], {
      stdio: ["ignore", "pipe", "pipe"],
      ...(childEnv === undefined ? {} : { env: childEnv }),
    });
    let out = "";
    let err = "";
    let exitInfo: { code: number | null; signal: NodeJS.Signals | null } | undefined;
    const exit = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => {
      child.once("exit", (code, signal) => {
        exitInfo = { code, signal };
        resolve(exitInfo);
      });
      child.once("error", () => {
        exitInfo = { code: null, signal: null };
        resolve(exitInfo);
      });
    });
    child.stdout.on("data", (chunk: Buffer) => {
      out += chunk.toString();
    });
    child.stderr.on("data", (chunk: Buffer) => {
      err += chunk.toString();
    });
    const handle: CorralProcess = {
      child,
      stdout: () => out,
      stderr: () => err,
      get exited() {
        return exitInfo !== undefined;
      },
      waitForOutput(pattern, timeoutMs = 30_000) {
        return new Promise((resolve, reject) => {
          const done = (result: RegExpExecArray | Error) => {
            clearTimeout(timer);
            clearInterval(poll);
            if (result instanceof Error) reject(result);
            else resolve(result);
          };
          const describe = () => `stdout:\n${out}\nstderr:\n${err.slice(-4000)}`;
          const timer = setTimeout(
            () =>
              done(new Error(`no ${pattern} from corral ${args[0]} within ${timeoutMs} ms; ${describe()}`)),
            timeoutMs,
          );
          const poll = setInterval(() => {
            const match = pattern.exec(out);
            if (match !== null) done(match);
            else if (exitInfo !== undefined)
              done(
                new Error(
                  `corral ${args[0]} exited (${JSON.stringify(exitInfo)}) before ${pattern}; ${describe()}`,
                ),
              );
          }, 20);
        });
      },
      async stop(signal = "SIGTERM", timeoutMs = 10_000) {
        if (exitInfo !== undefined) return exitInfo;
        child.kill(signal);
        let timer: NodeJS.Timeout | undefined;
        const timedOut = new Promise<"timeout">((resolve) => {
          timer = setTimeout(() => resolve("timeout"), timeoutMs);
        });
        const result = await Promise.race([exit, timedOut]);
        clearTimeout(timer);
        if (result !== "timeout") return result;
        child.kill("SIGKILL");
        await exit;
        throw new Error(`corral ${args[0]} ignored ${signal} for ${timeoutMs} ms and was killed`);
      },
    };
    this.#children.add(handle);
    return handle;
  }

  /** SIGKILLs every child still running and waits (bounded) for each to go. */
  async killAll(timeoutMs = 5_000): Promise<void> {
    await Promise.all(
      [...this.#children].map(async (p) => {
        if (!p.exited) await p.stop("SIGKILL", timeoutMs).catch(() => undefined);
      }),
    );
    this.#children.clear();
  }
}

const port = (address: string) => Number(address.slice(address.lastIndexOf(":") + 1));

export interface ControllerProcess {
  readonly process: CorralProcess;
  /** http.address as bound: the TLS cluster listener (NanoPing's hub HTTP address). */
  readonly cluster: string;
  /** grpcBridge.address as bound: plaintext gRPC, callers act as admin. */
  readonly bridge: string;
  readonly bridgePort: number;
}

export interface ControllerProcessOptions {
  readonly name?: string;
  /** hubServer.authenticationByRequest.timeout, e.g. "2s". */
  readonly authenticationTimeout?: string;
  readonly liveness?: { readonly minInterval?: string; readonly downAfter?: string };
}

/** Writes a NanoPing-style controller YAML into `dir` (every address on port 0) and runs `corral controller`. */
export async function startControllerProcess(
  processes: CorralProcesses,
  dir: string,
  options: ControllerProcessOptions = {},
): Promise<ControllerProcess> {
  const lines = [
    "node:",
    `  name: ${JSON.stringify(options.name ?? "My Controller")}`,
    "http:",
    "  address: 127.0.0.1:0",
    "grpcBridge:",
    "  address: 127.0.0.1:0",
    "web:",
    "  address: 127.0.0.1:0",
    ...(options.authenticationTimeout === undefined
      ? []
      : ["hubServer:", "  authenticationByRequest:", `    timeout: ${options.authenticationTimeout}`]),
    ...(options.liveness === undefined
      ? []
      : [
          "liveness:",
          ...Object.entries(options.liveness)
            .filter(([, v]) => v !== undefined)
            .map(([k, v]) => `  ${k}: ${v}`),
        ]),
    `dataDir: ${JSON.stringify(join(dir, "data"))}`,
    "shutdownGrace: 1s",
    "",
  ];
  const file = join(dir, "controller.yaml");
  await writeFile(file, lines.join("\n"));
  const proc = processes.start(["controller", "--config", file, "--log-level", "warn"]);
  const banner = await proc.waitForOutput(/cluster \(gRPC, TLS\)\s+(\S+)\n\s+bridge \(gRPC, h2c\)\s+(\S+)\n/);
  const cluster = banner[1] ?? "";
  const bridge = banner[2] ?? "";
  return { process: proc, cluster, bridge, bridgePort: port(bridge) };
}

export interface AgentProcess {
  readonly process: CorralProcess;
  /** The local API (NanoPing's `np up --grpc`), plaintext. */
  readonly localApi: string;
  readonly localApiPort: number;
  /** The node id the banner shows. */
  readonly nodeId: string;
}

/** Runs `corral up` on loopback ports the kernel picks, with the given data dir and extra options. */
export async function startAgentProcess(
  processes: CorralProcesses,
  dataDir: string,
  extraArgs: readonly string[] = [],
): Promise<AgentProcess> {
  const proc = processes.start([
    "up",
    "--grpc",
    "127.0.0.1:0",
    "--listen",
    "127.0.0.1:0",
    "--data-dir",
    dataDir,
    "--log-level",
    "warn",
    ...extraArgs,
  ]);
  const banner = await proc.waitForOutput(/\((\S+)\)\n\s+local API \(gRPC, h2c\)\s+(\S+)\n/);
  const localApi = banner[2] ?? "";
  return { process: proc, localApi, localApiPort: port(localApi), nodeId: banner[1] ?? "" };
}
