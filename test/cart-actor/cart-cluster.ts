import { MembersService } from "../../src/gen/corral/v1/members_pb.ts";
import { eventually, startTestAgent, type TestAgent } from "../helpers/agent.ts";
import { plaintextClient } from "../helpers/clients.ts";
import { startTestController, type TestController } from "../helpers/controller.ts";

/** A real controller and agents (in this process, real sockets), every agent a ready member. */
export interface CartCluster {
  readonly controller: TestController;
  readonly agents: TestAgent[];
  /** host:port of every member: the controller's first, then the agents' in order. */
  readonly hosts: string[];
  readonly members: ReturnType<typeof plaintextClient<typeof MembersService>>;
  close(): Promise<void>;
}

export async function startCartCluster(agentCount: number): Promise<CartCluster> {
  const controller = await startTestController({
    node: { name: "My Controller" },
    liveness: { minInterval: "200ms", downAfter: "800ms" },
  });
  const agents: TestAgent[] = [];
  try {
    const { token } = await controller.controller.context.tokens.create({
      role: "node",
      ttlMs: 60_000,
      uses: 0,
      description: "cart-actor tests",
      createdBy: "test",
      caFingerprint: controller.controller.ca.fingerprint,
    });
    for (let i = 1; i <= agentCount; i++) {
      const agent = await startTestAgent({ name: `agent-${i}` });
      agents.push(agent);
      await agent.agent.joinIfAsked(
        `127.0.0.1:${controller.clusterPort}`,
        token,
        AbortSignal.timeout(20_000),
      );
    }
    const members = plaintextClient(MembersService, controller.bridgePort);
    const hosts = [
      controller.controller.context.facts.advertiseAddress,
      ...agents.map((a) => a.agent.listenAddress),
    ];
    await eventually(
      async () => {
        const listed = (await members.listMembers({})).members;
        return hosts.every((host) => listed.some((m) => m.host === host && m.eligible)) ? true : undefined;
      },
      20_000,
      "every member ready",
    );
    return {
      controller,
      agents,
      hosts,
      members,
      async close() {
        for (const agent of agents) await agent.close().catch(() => undefined);
        await controller.close();
      },
    };
  } catch (error) {
    for (const agent of agents) await agent.close().catch(() => undefined);
    await controller.close();
    throw error;
  }
}
