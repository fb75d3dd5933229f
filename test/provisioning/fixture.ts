import { chmod, mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { Client } from "@connectrpc/connect";
import { type Job, ProvisioningService, RunStatus } from "../../src/gen/corral/v1/provisioning_pb.ts";
import { eventually, startTestAgent, type TestAgent } from "../helpers/agent.ts";
import { plaintextClient } from "../helpers/clients.ts";
import { startTestController, type TestController } from "../helpers/controller.ts";

/**
 * A real controller whose operator plans come from a temp dir, and real agents joined to it by token,
 * each on its own loopback listener: the controller dials them over mTLS to run steps.
 */
export interface ProvisioningCluster {
  controller: TestController;
  readonly agents: TestAgent[];
  readonly plansDir: string;
  readonly scratch: string;
  client(): Client<typeof ProvisioningService>;
  writePlan(file: string, text: string): Promise<void>;
  /** Stops the controller and starts it again on the same data dir and plans dir. */
  restart(): Promise<void>;
  close(): Promise<void>;
}

export async function startProvisioningCluster(agentNames: readonly string[]): Promise<ProvisioningCluster> {
  const scratch = await mkdtemp(join(tmpdir(), "corral-prov-"));
  // Exec steps run as `nobody` when the tests run as root (the agents' default --provision-as):
  // they must be able to look into the scratch dir, as they would into a real node's paths.
  await chmod(scratch, 0o755);
  const plansDir = join(scratch, "plans");
  await mkdir(plansDir);
  const dataDir = join(scratch, "controller");
  await mkdir(dataDir);
  const raw = { provisioning: { plansDir } };
  let controller = await startTestController(raw, {}, dataDir);
  const agents: TestAgent[] = [];
  try {
    for (const name of agentNames) {
      const agent = await startTestAgent({ name });
      agents.push(agent);
      const { token } = await controller.controller.context.tokens.create({
        role: "node",
        ttlMs: 60_000,
        uses: 1,
        description: "provisioning test",
        createdBy: "test",
        caFingerprint: controller.controller.ca.fingerprint,
      });
      await agent.agent.joinIfAsked(
        `127.0.0.1:${controller.clusterPort}`,
        token,
        AbortSignal.timeout(20_000),
      );
    }
    for (const agent of agents) {
      await eventually(
        async () => (agent.agent.link.state.value === "CONNECTED" ? true : undefined),
        15_000,
        "agent connected",
      );
    }
  } catch (error) {
    for (const agent of agents) await agent.close();
    await controller.close();
    await rm(scratch, { recursive: true, force: true });
    throw error;
  }
  const cluster: ProvisioningCluster = {
    controller,
    agents,
    plansDir,
    scratch,
    client: () => plaintextClient(ProvisioningService, cluster.controller.bridgePort),
    writePlan: (file, text) => writeFile(join(plansDir, file), text),
    async restart() {
      controller = await controller.restart();
      cluster.controller = controller;
    },
    async close() {
      for (const agent of agents) await agent.close();
      await controller.close();
      await rm(scratch, { recursive: true, force: true });
    },
  };
  return cluster;
}

const done = (status: RunStatus) =>
  status === RunStatus.SUCCEEDED || status === RunStatus.FAILED || status === RunStatus.CANCELLED;

/** Polls GetJob until the job has finished (bounded). */
export async function jobFinished(
  client: Client<typeof ProvisioningService>,
  jobId: string,
  timeoutMs = 20_000,
): Promise<Job> {
  return eventually(
    async () => {
      const { job } = await client.getJob({ jobId });
      return job !== undefined && done(job.status) ? job : undefined;
    },
    timeoutMs,
    `job ${jobId} to finish`,
  );
}

export function nodeOf(job: Job, name: string) {
  const node = job.nodes.find((n) => n.nodeName === name);
  if (node === undefined)
    throw new Error(`job ${job.id} has no node ${name}: ${job.nodes.map((n) => n.nodeName).join(", ")}`);
  return node;
}
