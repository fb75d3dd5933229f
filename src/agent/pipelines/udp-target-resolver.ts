import type { DescService } from "@bufbuild/protobuf";
import type { Client } from "@connectrpc/connect";
import { CorralError } from "../../base/errors.ts";
import type { NodeRecord } from "../../core/nodes/node.ts";
import { NodesService } from "../../gen/corral/v1/nodes_pb.ts";
import {
  PipelineRunState,
  type PipelineRunSummary,
  PipelineRunsService,
} from "../../gen/corral/v1/pipelines_pb.ts";
import type { PipelineManager, UdpBlockRef } from "../../pipelines/manager.ts";
import { fromConnectError } from "../../rpc/connect-errors.ts";
import type { ControllerLink } from "../controller-link.ts";
import { listPipelineRuns } from "../services/pipeline-runs-service.ts";

export interface UdpTargetLookups {
  /** A node by id or name, with the address other members reach it at. */
  node(nodeIdOrName: string, signal: AbortSignal): Promise<{ id: string; name: string; address: string }>;
  /** That node's pipelines with their latest runs (corral.v1.PipelineRunsService/ListPipelines). */
  pipelines(nodeId: string, signal: AbortSignal): Promise<readonly PipelineRunSummary[]>;
}

/**
 * Resolves a udp_sender's `{node, pipeline, block}`: the receiving run must be live and its
 * udp_receiver bound; a receiver bound to every interface is reached at its node's address.
 */
export function udpTargetResolver(
  lookups: UdpTargetLookups,
): (target: UdpBlockRef, signal: AbortSignal) => Promise<{ host: string; port: number }> {
  return async (target, signal) => {
    const node = await lookups.node(target.node, signal);
    const pipeline = (await lookups.pipelines(node.id, signal)).find((p) => p.name === target.pipeline);
    if (pipeline === undefined) throw CorralError.notFound("pipeline", `${target.pipeline} on ${node.name}`);
    const run = pipeline.run;
    if (
      run === undefined ||
      (run.state !== PipelineRunState.RUNNING && run.state !== PipelineRunState.STARTING)
    )
      throw new CorralError(
        "FAILED_PRECONDITION",
        `pipeline ${target.pipeline} on ${node.name} is not running`,
      );
    const endpoint = run.endpoints.find((e) => e.block === target.block);
    if (endpoint === undefined)
      throw new CorralError(
        "FAILED_PRECONDITION",
        `block ${target.block} of ${target.pipeline} on ${node.name} is not a listening udp_receiver`,
      );
    const anyAddress = endpoint.host === "0.0.0.0" || endpoint.host === "::";
    return { host: anyAddress ? node.address : endpoint.host, port: endpoint.port };
  };
}

/**
 * The controller's own node's resolver: nodes from the registry, the controller's own pipelines from
 * its manager, any other node's from that agent over mTLS.
 */
export function controllerUdpTargets(deps: {
  registry: { get(nodeIdOrName: string): Promise<{ id: string; name: string; address: string }> };
  agents: () => {
    resolve(nodeIdOrName: string): Promise<NodeRecord>;
    client<S extends DescService>(service: S, node: NodeRecord): Promise<Client<S>>;
  };
  controllerNodeId: string;
  manager: () => PipelineManager;
}): (target: UdpBlockRef, signal: AbortSignal) => Promise<{ host: string; port: number }> {
  return udpTargetResolver({
    node: (which) => deps.registry.get(which),
    pipelines: async (nodeId, signal) => {
      if (nodeId === deps.controllerNodeId) return listPipelineRuns(deps.manager());
      const agents = deps.agents();
      const client = await agents.client(PipelineRunsService, await agents.resolve(nodeId));
      return (await client.listPipelines({ nodeId }, { signal })).pipelines;
    },
  });
}

/**
 * Resolves a udp_sender's `{node, pipeline, block}` through the controller: the node's address from
 * NodesService, the receiving block's port from that node's PipelineRunsService (relayed by the
 * controller to the node).
 */
export function controllerUdpResolver(
  link: ControllerLink,
): (target: UdpBlockRef, signal: AbortSignal) => Promise<{ host: string; port: number }> {
  const resolve = udpTargetResolver({
    node: async (which, signal) => {
      const { node } = await link.client(NodesService).getNode({ node: which }, { signal });
      if (node === undefined) throw CorralError.notFound("node", which);
      return node;
    },
    pipelines: async (nodeId, signal) =>
      (await link.client(PipelineRunsService).listPipelines({ nodeId }, { signal })).pipelines,
  });
  return async (target, signal) => {
    try {
      return await resolve(target, signal);
    } catch (error) {
      throw error instanceof CorralError ? error : fromConnectError(error);
    }
  };
}
