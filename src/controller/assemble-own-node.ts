import { join } from "node:path";
import { MachineSampler } from "../agent/machine/machine-sampler.ts";
import { createMetricsSampler } from "../agent/metrics-pusher.ts";
import { controllerUdpTargets } from "../agent/pipelines/udp-target-resolver.ts";
import { createNodeAgent, type LocalNodeAgent } from "../agent/services/node-agent/node-agent.ts";
import { parseDuration } from "../base/duration.ts";
import { defaults } from "../defaults.ts";
import type { AgentLogRing } from "../host/logs/ring-log-source.ts";
import { ProcessLedger } from "../host/process-ledger.ts";
import type { Logger } from "../observability/logger.ts";
import { PipelineManager } from "../pipelines/manager.ts";
import { processPolicy } from "../pipelines/process-policy.ts";
import { corralVersion } from "../version.ts";
import { AgentDialer } from "./agent-dialer.ts";
import type { Core } from "./assemble-core.ts";
import type { GrpcListeners } from "./assemble-listeners.ts";
import type { Security } from "./assemble-security.ts";
import type { Storage } from "./assemble-store.ts";
import { controllerNodeKeyOf, ensureControllerNode } from "./cluster-facts.ts";
import type { ControllerConfig } from "./config.ts";
import { OwnNodeMetrics } from "./metrics-own-node.ts";
import { OwnNodeResources } from "./own-node-resources.ts";
import { assemble, type Stack } from "./stack.ts";

type OwnNodeSettings = NonNullable<ControllerConfig["ownNode"]>;

/** The controller's own node: it runs pipelines and provisioning steps like an agent's. */
export interface OwnNode {
  readonly controllerNodeId: string;
  readonly settings: OwnNodeSettings;
  readonly localNode: LocalNodeAgent;
  /** The controller's machine, read once for all its readers, as an agent's is. */
  readonly machine: MachineSampler;
  /** Process groups started here, reaped after a crash. */
  readonly ledger: ProcessLedger;
  readonly localPipelines: PipelineManager;
  /** Calls to other nodes' agents, as this controller. */
  readonly agents: AgentDialer;
  readonly stack: Stack;
}

export function assembleOwnNode(
  config: ControllerConfig,
  storage: Pick<Storage, "store" | "etcd">,
  core: Pick<Core, "registry">,
  security: Pick<Security, "ca">,
  advertise: GrpcListeners["advertise"],
  logger: Logger,
  logRing: AgentLogRing,
): Promise<OwnNode> {
  return assemble(async (stack) => {
    const { registry } = core;
    const controllerNodeId = await ensureControllerNode(
      storage.store,
      registry,
      { name: config.nodeName, address: advertise.host, port: advertise.port, version: corralVersion },
      controllerNodeKeyOf(storage.etcd === undefined ? undefined : config.nodeName),
    );
    const settings = config.ownNode ?? {
      resourcesRefreshMs: parseDuration(defaults.controller.ownResourcesRefresh),
      nvidiaSmi: defaults.controller.nvidiaSmi,
    };
    const machine = new MachineSampler({ nvidiaSmi: settings.nvidiaSmi, onWarning: (m) => logger.warn(m) });
    const localNode = await createNodeAgent({
      dataDir: config.dataDir,
      nodeId: () => controllerNodeId,
      controllerState: () => "CONNECTED",
      logger,
      logRing,
      machine,
    });
    stack.defer(() => localNode.close());
    // The controller's own node starts runs and steps like an agent: what a killed controller left
    // running is reaped before its pipelines start again.
    const ledger = await ProcessLedger.open(join(config.dataDir, defaults.agent.processLedgerFile), {
      graceMs: parseDuration(defaults.agent.reapGrace),
      onReaped: (entry) =>
        logger.warn({ pgid: entry.pgid, what: entry.what }, "killed a process group left by the last run"),
      onWriteError: (error) =>
        logger.warn({ error: error.message }, "could not update the ledger of process groups"),
    });
    const agents = new AgentDialer(registry, security.ca, controllerNodeId);
    const localPipelines: PipelineManager = await PipelineManager.open({
      recorder: ledger,
      dataDir: join(config.dataDir, "pipelines"),
      registerLogs: (run) => localNode.logs.registerPipeline(run.id, run.logs),
      // The controller's machine holds the CA key: its node runs process blocks only when its
      // config names programs (default: none).
      processPolicy: processPolicy(
        config.pipelines?.processAllow ?? defaults.pipelines.processAllow,
        "pipelines.processAllow",
      ),
      // Called only once runs start, after the manager exists.
      resolveUdpTarget: controllerUdpTargets({
        registry,
        agents: () => agents,
        controllerNodeId,
        manager: () => localPipelines,
      }),
    });
    stack.defer(() => localPipelines.close());
    return { controllerNodeId, settings, localNode, machine, ledger, localPipelines, agents };
  });
}

/**
 * Keeps the controller's node described like any agent's: its machine read before placement starts and
 * kept current, its metrics sampled into the history. Started among the engines (stopped in that order).
 */
export async function startOwnNodeUpkeep(
  stack: Stack,
  own: OwnNode,
  core: Pick<Core, "registry" | "metricsHistory" | "metricsSettings" | "loads">,
  logger: Logger,
): Promise<void> {
  const { registry } = core;
  const ownResources = await OwnNodeResources.start({
    registry,
    nodeId: own.controllerNodeId,
    refreshMs: own.settings.resourcesRefreshMs,
    nvidiaSmi: own.settings.nvidiaSmi,
    machine: own.machine,
    ...(own.settings.maxLayers === undefined ? {} : { maxLayers: own.settings.maxLayers }),
    logger,
  });
  stack.defer(() => ownResources.close());
  const ownMetrics = new OwnNodeMetrics({
    history: core.metricsHistory,
    nodeId: own.controllerNodeId,
    intervalMs: core.metricsSettings.intervalMs,
    sample: createMetricsSampler({ machine: own.machine }),
    nodeIds: async () => new Set((await registry.list()).nodes.map((node) => node.id)),
    logger,
    loads: core.loads,
  });
  stack.defer(() => ownMetrics.close());
}
