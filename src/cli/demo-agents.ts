import { type ChildProcess, spawn } from "node:child_process";
import { join } from "node:path";
import { corralCommand } from "../base/package-root.ts";
import { defaults } from "../defaults.ts";
import { withParentDeathSignal } from "../host/run-as.ts";
import type { Logger } from "../observability/logger.ts";

export interface DemoAgentSpec {
  readonly name: string;
  readonly localApi: string;
  readonly listen: string;
  readonly dataDir: string;
}

/** The demo's agents: real `corral up` processes, one per node, stopped with the demo. */
export class DemoAgents implements AsyncDisposable {
  readonly #children = new Map<string, ChildProcess>();
  readonly #logger: Logger;
  #stopping = false;

  constructor(logger: Logger) {
    this.#logger = logger;
  }

  static specs(
    count: number,
    firstLocalPort: number,
    firstListenPort: number,
    dataDir: string,
  ): DemoAgentSpec[] {
    return Array.from({ length: count }, (_, i) => ({
      name: `agent-${i + 1}`,
      localApi: `127.0.0.1:${firstLocalPort + i}`,
      listen: `127.0.0.1:${firstListenPort + i}`,
      dataDir: join(dataDir, `agent-${i + 1}`),
    }));
  }

  start(spec: DemoAgentSpec, controller: string, token: string): void {
    const corral = corralCommand(
      [
        "up",
        "--name",
        spec.name,
        "--grpc",
        spec.localApi,
        "--listen",
        spec.listen,
        "--data-dir",
        spec.dataDir,
        "--join",
        controller,
        "--token",
        token,
        "--log-level",
        "warn",
      ],
      defaults.agent.nodeFlags,
    );
    // The agents die with the demo, however it ends (kill -9 included): none is left running unseen.
    const launch = withParentDeathSignal(corral.file, corral.args);
    const child = spawn(launch.file, launch.args, { stdio: ["ignore", "ignore", "pipe"] });
    child.stderr?.on("data", (chunk: Buffer) => {
      for (const line of chunk.toString().split("\n").filter(Boolean))
        this.#logger.warn({ agent: spec.name }, line);
    });
    child.once("exit", (code, signal) => {
      this.#children.delete(spec.name);
      if (!this.#stopping) this.#logger.error({ agent: spec.name, code, signal }, "a demo agent stopped");
    });
    this.#children.set(spec.name, child);
  }

  /** SIGTERM to every agent (they drain), SIGKILL to any still running after `graceMs`. */
  async stop(graceMs = 3_000): Promise<void> {
    this.#stopping = true;
    const exits = [...this.#children.values()].map(
      (child) =>
        new Promise<void>((resolve) => {
          if (child.exitCode !== null || child.signalCode !== null) return resolve();
          const kill = setTimeout(() => child.kill("SIGKILL"), graceMs);
          child.once("exit", () => {
            clearTimeout(kill);
            resolve();
          });
          child.kill("SIGTERM");
        }),
    );
    await Promise.all(exits);
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.stop();
  }
}
