import type { DescService } from "@bufbuild/protobuf";
import type { ServiceImpl } from "@connectrpc/connect";
import { cartActorControlPlane } from "../faces/cart-actor/control-plane-service.ts";
import { membersService } from "../faces/cart-actor/members-service.ts";
import { agentService } from "../faces/corral/agent-service.ts";
import { certificatesService } from "../faces/corral/certificates-service.ts";
import { clusterService } from "../faces/corral/cluster-service.ts";
import { clustersService } from "../faces/corral/clusters-service.ts";
import { devicesService, hardwareRelay } from "../faces/corral/devices-service.ts";
import { joinService } from "../faces/corral/join-service.ts";
import { metricsService } from "../faces/corral/metrics-service.ts";
import { modelsService } from "../faces/corral/models-service.ts";
import { nodeOpsService } from "../faces/corral/node-ops-service.ts";
import { nodesService } from "../faces/corral/nodes-service.ts";
import { peerService } from "../faces/corral/peer-service.ts";
import { pipelineRunsRelay } from "../faces/corral/pipeline-runs-relay.ts";
import { provisioningService } from "../faces/corral/provisioning-service.ts";
import { sessionService } from "../faces/corral/session-service.ts";
import { tokensService } from "../faces/corral/tokens-service.ts";
import { distributedLlmDiscoveryService } from "../faces/distributed-llm/discovery-service.ts";
import { distributedLlmNodeService } from "../faces/distributed-llm/node-service.ts";
import { distributedLlmTuiService } from "../faces/distributed-llm/tui-service.ts";
import type { FaceContext } from "../faces/face-context.ts";
import { controllerHubClientService } from "../faces/nanoping/hub-client-service.ts";
import { hubServerService } from "../faces/nanoping/hub-server-service.ts";
import { controllerLoggingService } from "../faces/nanoping/logging-relay.ts";
import { controllerPipelinesService } from "../faces/nanoping/pipelines-relay.ts";
import { relayToNode } from "../faces/node-relay.ts";
import { piControlPlane } from "../faces/picontroller/control-plane-service.ts";
import { piRequestProvisioning } from "../faces/picontroller/provisioning.ts";
import { ControlPlane as CartControlPlane } from "../gen/control_plane_pb.ts";
import { AgentService } from "../gen/corral/v1/agent_pb.ts";
import { CertificatesService } from "../gen/corral/v1/certificates_pb.ts";
import { ClusterService } from "../gen/corral/v1/cluster_pb.ts";
import { ClustersService } from "../gen/corral/v1/clusters_pb.ts";
import { DevicesService } from "../gen/corral/v1/devices_pb.ts";
import { HardwareService } from "../gen/corral/v1/hardware_pb.ts";
import { JoinService } from "../gen/corral/v1/join_pb.ts";
import { MembersService } from "../gen/corral/v1/members_pb.ts";
import { MetricsService } from "../gen/corral/v1/metrics_pb.ts";
import { ModelsService } from "../gen/corral/v1/models_pb.ts";
import { NodeOpsService } from "../gen/corral/v1/node_ops_pb.ts";
import { NodesService } from "../gen/corral/v1/nodes_pb.ts";
import { ControllerPeerService } from "../gen/corral/v1/peers_pb.ts";
import { PipelineRunsService } from "../gen/corral/v1/pipelines_pb.ts";
import { ProvisioningService } from "../gen/corral/v1/provisioning_pb.ts";
import { SessionService } from "../gen/corral/v1/session_pb.ts";
import { TokensService } from "../gen/corral/v1/tokens_pb.ts";
import { HubClientService } from "../gen/hub_client_pb.ts";
import { HubServerService } from "../gen/hub_server_pb.ts";
import { LoggingService } from "../gen/logging_pb.ts";
import { DiscoveryService, NodeService, TUIService } from "../gen/node_pb.ts";
import { NodeAgent, ControlPlane as PiControlPlane } from "../gen/picontroller_pb.ts";
import { PipelinesService } from "../gen/pipelines_pb.ts";

export interface ServiceEntry {
  readonly service: DescService;
  readonly impl: Partial<ServiceImpl<DescService>>;
}

const entry = <S extends DescService>(service: S, impl: Partial<ServiceImpl<S>>): ServiceEntry => ({
  service,
  impl: impl as Partial<ServiceImpl<DescService>>,
});

/** corral's native API: served on every transport, the browser's included. */
export function browserServices(context: FaceContext): ServiceEntry[] {
  const hardware = hardwareRelay(context);
  return [
    entry(NodesService, nodesService(context)),
    entry(ClusterService, clusterService(context)),
    entry(JoinService, joinService(context)),
    entry(TokensService, tokensService(context)),
    entry(ProvisioningService, provisioningService(context)),
    entry(ModelsService, modelsService(context)),
    entry(MembersService, membersService(context)),
    entry(CertificatesService, certificatesService(context)),
    entry(MetricsService, metricsService(context)),
    entry(ClustersService, clustersService(context)),
    entry(SessionService, sessionService(context)),
    entry(NodeOpsService, nodeOpsService(context)),
    entry(HardwareService, hardware),
    entry(DevicesService, devicesService({ ...context, hardware })),
    entry(PipelineRunsService, pipelineRunsRelay(context)),
  ];
}

/**
 * Every service the controller serves over gRPC. A method a face does not implement yet answers
 * UNIMPLEMENTED, so clients and reflection see every API's full surface.
 */
export function grpcServices(context: FaceContext): ServiceEntry[] {
  return [
    ...browserServices(context),
    entry(AgentService, agentService(context)),
    entry(ControllerPeerService, peerService(context)),
    entry(NodeService, distributedLlmNodeService(context)),
    entry(DiscoveryService, distributedLlmDiscoveryService(context)),
    entry(TUIService, distributedLlmTuiService(context)),
    entry(HubServerService, hubServerService(context)),
    entry(HubClientService, controllerHubClientService(context)),
    entry(PipelinesService, controllerPipelinesService(context, context.localPipelines ?? {})),
    entry(LoggingService, controllerLoggingService(context, context.localLogging ?? {})),
    entry(CartControlPlane, cartActorControlPlane(context)),
    entry(PiControlPlane, { ...piControlPlane(context), ...piRequestProvisioning(context) }),
    entry(NodeAgent, relayToNode(NodeAgent, context, context.localNodeAgent)),
  ];
}
