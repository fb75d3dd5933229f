import { join, resolve } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import type { Command } from "commander";
import { resolveControllerConfig } from "../../controller/config.ts";
import { defaults } from "../../defaults.ts";
import { createLogger } from "../../observability/logger.ts";
import { DemoAgents } from "../demo-agents.ts";
import { closeOnSignals } from "../shutdown.ts";

const clusterPort = 7443;

/**
 * The demo's addresses: the documented ones, or with `--port-base P` (two demos side by side, tests)
 * cluster P, bridge P+1, web P+2, agent listeners from P+10 and local APIs from P+30.
 */
function demoAddresses(portBase: number | undefined) {
  const at = (port: number) => `127.0.0.1:${port}`;
  if (portBase === undefined)
    return {
      cluster: at(clusterPort),
      bridge: defaults.controller.bridgeAddress,
      web: defaults.controller.webAddress,
      firstListenPort: clusterPort + 1,
      firstLocalPort: defaults.demo.agentLocalApiFirstPort,
    };
  return {
    cluster: at(portBase),
    bridge: at(portBase + 1),
    web: at(portBase + 2),
    firstListenPort: portBase + 10,
    firstLocalPort: portBase + 30,
  };
}

/**
 * `npm start`: a whole cluster on this machine — a controller and three agents that join by token —
 * on the addresses the seed documents use, so their examples work as printed
 * (`grpcurl -plaintext localhost:8080 list`, "My Controller", `GetNodeInfo {"node_id": "agent-1"}`,
 * NanoPing's `np up --grpc 127.0.0.1:10432`).
 */
export function registerDemoCommand(program: Command): void {
  program
    .command("demo")
    .description(
      "start a demo cluster on this machine: a controller and three agents (data in ./.corral/demo)",
    )
    .option("--data-dir <dir>", "where the demo keeps its state", defaults.demo.dataDir)
    .option("--agents <n>", "how many agents to start", String(defaults.demo.agents))
    .option("--log-level <level>", "trace, debug, info, warn, error", "warn")
    .option(
      "--port-base <port>",
      "move every address off the documented ones: cluster at this port, bridge +1, web +2, agents +10 and +30",
    )
    .action(async (options: { dataDir: string; agents: string; logLevel: string; portBase?: string }) => {
      const { AgentLogRing } = await import("../../host/logs/ring-log-source.ts");
      const logRing = new AgentLogRing();
      const logger = createLogger({ level: options.logLevel, name: "demo", tee: logRing.ingest });
      const agentCount = Number(options.agents);
      if (!Number.isInteger(agentCount) || agentCount < 0 || agentCount > 20) {
        throw new Error(`--agents must be a whole number from 0 to 20, not "${options.agents}"`);
      }
      const portBase = options.portBase === undefined ? undefined : Number(options.portBase);
      if (portBase !== undefined && !(Number.isInteger(portBase) && portBase >= 1024 && portBase <= 65_000)) {
        throw new Error(`--port-base must be a port from 1024 to 65000, not "${options.portBase}"`);
      }
      const addresses = demoAddresses(portBase);
      const dataDir = resolve(options.dataDir);
      const config = resolveControllerConfig(
        {
          node: { name: defaults.controller.nodeName },
          http: { address: addresses.cluster },
          grpcBridge: { address: addresses.bridge },
          web: { address: addresses.web },
          hubServer: {
            authenticationByRequest: { timeout: defaults.controller.authenticationByRequestTimeout },
          },
          shutdownGrace: "3s",
        },
        process.cwd(),
        { dataDir: join(dataDir, "controller") },
        "demo",
      );
      const { Controller } = await import("../../controller/controller.ts");
      const controller = await Controller.start(config, logger, undefined, logRing);
      const agents = new DemoAgents(logger);
      // Before anything else starts: a signal at any point from here (during start-up, or right after
      // the banner, before the next line would have run) stops the agents and the controller.
      let stopping = false;
      const stopped = closeOnSignals(async () => {
        stopping = true;
        await agents.stop();
        await controller.close();
      }, logger);
      const specs = DemoAgents.specs(
        agentCount,
        addresses.firstLocalPort,
        addresses.firstListenPort,
        dataDir,
      );
      const { token } = await controller.context.tokens.create({
        role: "node",
        ttlMs: 600_000,
        uses: specs.length,
        description: "demo agents",
        createdBy: "demo",
        caFingerprint: controller.ca.fingerprint,
      });
      for (const spec of specs) agents.start(spec, controller.addresses.cluster, token);
      // Ready means heard from by this controller: on a second start the store still says "ready"
      // for every agent, before any of them runs again.
      const ready = await Promise.race([
        waitForReady(
          controller.context.registry,
          specs.map((s) => s.name),
          controller.context.facts.startedAt,
          60_000,
        ),
        stopped.then(() => undefined),
      ]);
      if (ready === undefined || stopping) return stopped;

      const bridge = controller.addresses.bridge.replace("127.0.0.1", "localhost");
      const next = specs.length + 1;
      // The CLI's default server is the documented bridge; elsewhere it must be named.
      const cli = portBase === undefined ? "" : ` --server ${controller.addresses.bridge}`;
      process.stdout.write(
        `\ncorral demo cluster is up (data in ${dataDir})\n\n` +
          `  controller "${config.nodeName}"\n` +
          `    cluster gRPC (TLS)   ${controller.addresses.cluster}   CA ${controller.ca.fingerprint}\n` +
          `    bridge gRPC (h2c)    ${controller.addresses.bridge}\n` +
          `    web, /metrics        ${controller.webUrl}\n` +
          `    admin credentials    ${controller.adminCredentialsDir}\n` +
          specs
            .map(
              (s) =>
                `  ${s.name.padEnd(10)} local API ${s.localApi}   listener ${s.listen}   ${ready.has(s.name) ? "ready" : "starting"}\n`,
            )
            .join("") +
          "\nTry:\n" +
          `  npx corral${cli} status\n` +
          `  npx corral${cli} nodes ls\n` +
          `  grpcurl -plaintext ${bridge} list\n` +
          `  grpcurl -plaintext -d '{"node_id": "agent-1"}' ${bridge} distributed_llm.NodeService/GetNodeInfo\n` +
          `  curl ${controller.webUrl}/metrics\n\n` +
          "Add a node by request and accept it:\n" +
          `  npx corral up --name agent-${next} --grpc 127.0.0.1:${addresses.firstLocalPort + next - 1} ` +
          `--listen 127.0.0.1:${addresses.firstListenPort + next - 1} --data-dir ${join(options.dataDir, `agent-${next}`)} --join ${addresses.cluster}\n` +
          `  npx corral${cli} requests ls\n` +
          `  npx corral${cli} requests accept agent-${next}\n\n` +
          "Ctrl-C stops the cluster (twice: at once).\n",
      );
      await stopped;
    });
}

/** Waits (bounded) until each named node is ready and has been heard from since `startedAt`. */
async function waitForReady(
  registry: { list(): Promise<{ nodes: { name: string; status: string; lastSeenAt: number }[] }> },
  names: readonly string[],
  startedAt: number,
  timeoutMs: number,
): Promise<Set<string>> {
  const deadline = Date.now() + timeoutMs;
  const ready = new Set<string>();
  while (Date.now() < deadline && ready.size < names.length) {
    const { nodes } = await registry.list();
    for (const node of nodes)
      if (names.includes(node.name) && node.status === "ready" && node.lastSeenAt >= startedAt)
        ready.add(node.name);
    if (ready.size < names.length) await sleep(200);
  }
  return ready;
}
