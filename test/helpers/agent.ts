import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Agent, type AgentOptions } from "../../src/agent/agent.ts";
import { createLogger } from "../../src/observability/logger.ts";

export interface TestAgent {
  readonly agent: Agent;
  readonly dataDir: string;
  readonly localPort: number;
  close(): Promise<void>;
}

/** A real agent on loopback ports the kernel picks, with its data in a temp dir (kept when given). */
export async function startTestAgent(options: Partial<AgentOptions> = {}): Promise<TestAgent> {
  const dataDir = options.dataDir ?? (await mkdtemp(join(tmpdir(), "corral-agent-")));
  const agent = await Agent.start(
    { localApiAddress: "127.0.0.1:0", listenAddress: "127.0.0.1:0", ...options, dataDir },
    createLogger({ level: process.env.CORRAL_TEST_LOG ?? "silent" }),
  );
  return {
    agent,
    dataDir,
    localPort: Number(agent.localApiAddress.slice(agent.localApiAddress.lastIndexOf(":") + 1)),
    async close() {
      await agent.close(500);
      if (options.dataDir === undefined) await rm(dataDir, { recursive: true, force: true });
    },
  };
}

/** Polls `check` until it returns a value, bounded by `timeoutMs`. */
export async function eventually<T>(
  check: () => Promise<T | undefined>,
  timeoutMs = 15_000,
  what = "condition",
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let lastError: unknown;
  while (Date.now() < deadline) {
    try {
      const value = await check();
      if (value !== undefined) return value;
    } catch (error) {
      lastError = error;
    }
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  throw new Error(`timed out waiting for ${what}${lastError ? `: ${String(lastError)}` : ""}`);
}

/** A join token of the test controller's cluster (role node). */
export async function nodeToken(
  cluster: {
    controller: {
      context: { tokens: import("../../src/core/admission/tokens.ts").TokenRegistry };
      ca: { fingerprint: string };
    };
  },
  options: { uses?: number; ttlMs?: number } = {},
): Promise<string> {
  const { token } = await cluster.controller.context.tokens.create({
    role: "node",
    ttlMs: options.ttlMs ?? 60_000,
    uses: options.uses ?? 1,
    description: "test",
    createdBy: "test",
    caFingerprint: cluster.controller.ca.fingerprint,
  });
  return token;
}

/** Joins a test agent to a test controller with a fresh token and waits until it is connected. */
export async function joinWithToken(
  cluster: Parameters<typeof nodeToken>[0] & { clusterPort: number },
  node: TestAgent,
): Promise<void> {
  await node.agent.joinIfAsked(
    `127.0.0.1:${cluster.clusterPort}`,
    await nodeToken(cluster),
    AbortSignal.timeout(20_000),
  );
  await eventually(
    async () => (node.agent.link.state.value === "CONNECTED" ? true : undefined),
    15_000,
    "CONNECTED",
  );
}
