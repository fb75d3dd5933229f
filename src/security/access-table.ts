import type { Role } from "./principal.ts";

/**
 * Who may call what, for every method of every service the controller serves: the one table the
 * authorization interceptor reads, and a test walks (every method × every role).
 *
 * - `roles`: the roles allowed. The loopback bridge acts as `admin`.
 * - `anonymous`: callers without a certificate or token may call it too (joining, health probes,
 *   reflection — what a stranger needs to become a member or to check liveness).
 * - `mutates`: the call changes cluster state, so it is written to the audit log.
 * - `selfOnly`: a node may call it only about itself; the handler enforces it.
 */
export interface AccessRule {
  readonly roles: readonly Role[];
  readonly anonymous?: true;
  readonly mutates?: true;
  readonly selfOnly?: true;
}

const everyone: readonly Role[] = ["viewer", "operator", "admin", "node"];
const people: readonly Role[] = ["viewer", "operator", "admin"];
const operators: readonly Role[] = ["operator", "admin"];
const admins: readonly Role[] = ["admin"];
const nodesOnly: readonly Role[] = ["node"];
const operatorsAndNodes: readonly Role[] = ["operator", "admin", "node"];

const read: AccessRule = { roles: everyone };
const peopleRead: AccessRule = { roles: people };
const operate: AccessRule = { roles: operators, mutates: true };
const administer: AccessRule = { roles: admins, mutates: true };
const nodeSelf: AccessRule = { roles: nodesOnly, mutates: true, selfOnly: true };
const operateOrSelf: AccessRule = { roles: operatorsAndNodes, mutates: true, selfOnly: true };
const open: AccessRule = { roles: everyone, anonymous: true };
/**
 * Pipeline configs hold argv and env (secrets, often): operators, admins and the node itself (the
 * handler refuses a node asking about another). Viewers see run state through PipelineRunsService.
 */
const readConfigs: AccessRule = { roles: operatorsAndNodes, selfOnly: true };
/** A run's log and telemetry: every person; a node only its own (the handler checks). */
const readRunsOfSelf: AccessRule = { roles: everyone, selfOnly: true };

export const accessTable: Readonly<Record<string, AccessRule>> = {
  // corral's native API
  "/corral.v1.NodesService/ListNodes": read,
  "/corral.v1.NodesService/GetNode": read,
  "/corral.v1.NodesService/WatchNodes": read,
  "/corral.v1.NodesService/RemoveNode": operate,
  "/corral.v1.ClusterService/GetClusterStatus": read,
  "/corral.v1.JoinService/Join": { roles: everyone, anonymous: true, mutates: true },
  "/corral.v1.JoinService/RenewCertificate": nodeSelf,
  "/corral.v1.JoinService/ListJoinRequests": peopleRead,
  "/corral.v1.JoinService/WatchJoinRequests": peopleRead,
  "/corral.v1.JoinService/AnswerJoinRequest": operate,
  "/corral.v1.TokensService/CreateToken": administer,
  "/corral.v1.TokensService/ListTokens": { roles: operators },
  "/corral.v1.TokensService/RevokeToken": administer,
  "/corral.v1.ModelsService/AddModel": operate,
  "/corral.v1.ModelsService/ListModels": read,
  "/corral.v1.ModelsService/GetModel": read,
  "/corral.v1.ModelsService/RemoveModel": operate,
  "/corral.v1.ModelsService/AssignModel": operate,
  "/corral.v1.ModelsService/UnassignModel": operate,
  "/corral.v1.ModelsService/WatchModels": read,
  "/corral.v1.ProvisioningService/ListPlans": peopleRead,
  "/corral.v1.ProvisioningService/GetJob": peopleRead,
  "/corral.v1.ProvisioningService/WatchJob": peopleRead,
  "/corral.v1.ProvisioningService/ListJobs": peopleRead,
  "/corral.v1.ProvisioningService/RunPlan": operate,
  "/corral.v1.ProvisioningService/RetryJob": operate,
  "/corral.v1.ProvisioningService/CancelJob": operate,
  "/corral.v1.AgentService/Heartbeat": { roles: nodesOnly, selfOnly: true },
  "/corral.v1.AgentService/HeartbeatStream": { roles: nodesOnly, selfOnly: true },
  "/corral.v1.AgentService/WatchAccess": { roles: nodesOnly },
  // Controllers only (their certificates carry role admin; the handler checks it is a controller).
  "/corral.v1.ControllerPeerService/Replicate": { roles: admins },
  "/corral.v1.AgentService/UpdateSelf": nodeSelf,
  "/corral.v1.AgentService/Leave": nodeSelf,
  "/corral.v1.HardwareService/DescribeHardware": read,
  "/corral.v1.HardwareService/ListPins": read,
  "/corral.v1.HardwareService/ReadPin": read,
  "/corral.v1.HardwareService/WritePin": operate,
  "/corral.v1.HardwareService/ConfigurePin": operate,
  "/corral.v1.HardwareService/WatchPins": read,
  "/corral.v1.HardwareService/SetPwm": operate,
  "/corral.v1.HardwareService/GetPwm": read,
  "/corral.v1.HardwareService/SpiTransfer": operate,
  "/corral.v1.HardwareService/I2cRead": read,
  "/corral.v1.HardwareService/I2cWrite": operate,
  "/corral.v1.HardwareService/I2cReadRegister": read,
  "/corral.v1.HardwareService/I2cWriteRegister": operate,
  "/corral.v1.HardwareService/ReadAnalog": read,
  "/corral.v1.HardwareService/SampleInput": read,
  "/corral.v1.DevicesService/ListDevices": read,
  "/corral.v1.DevicesService/GetDevice": read,
  "/corral.v1.DevicesService/AddDevice": operate,
  "/corral.v1.DevicesService/RemoveDevice": operate,
  "/corral.v1.DevicesService/ReadDevice": read,
  "/corral.v1.DevicesService/WriteDevice": operate,
  "/corral.v1.DevicesService/WatchReadings": read,
  "/corral.v1.MembersService/ListMembers": read,
  "/corral.v1.MembersService/WatchMembers": read,
  "/corral.v1.MembersService/ResolveOwner": read,
  "/corral.v1.MembersService/ListKeys": read,
  "/corral.v1.MembersService/RegisterKeys": { roles: operatorsAndNodes, mutates: true },
  "/corral.v1.MembersService/Claim": operateOrSelf,
  "/corral.v1.MembersService/Release": operateOrSelf,
  "/corral.v1.MembersService/Drain": operateOrSelf,
  "/corral.v1.MembersService/SetWeight": operateOrSelf,
  "/corral.v1.CertificatesService/ListCertificates": peopleRead,
  "/corral.v1.CertificatesService/GetCertificate": peopleRead,
  "/corral.v1.CertificatesService/RenewCertificate": administer,
  "/corral.v1.CertificatesService/RevokeCertificate": administer,
  "/corral.v1.CertificatesService/ValidateCertificate": peopleRead,
  "/corral.v1.CertificatesService/ListCertificateRequests": peopleRead,
  "/corral.v1.CertificatesService/ApproveCertificateRequest": administer,
  "/corral.v1.CertificatesService/RejectCertificateRequest": administer,
  "/corral.v1.CertificatesService/GetStatistics": peopleRead,
  "/corral.v1.CertificatesService/GetCa": peopleRead,
  "/corral.v1.CertificatesService/RotateCa": administer,
  // Members fetch the CAs to trust and learn whether to renew (a rotation, an admin's request).
  "/corral.v1.CertificatesService/GetTrustBundle": read,
  // Metrics pushes are like heartbeats: frequent, in memory only, not audited.
  "/corral.v1.MetricsService/PushMetrics": { roles: nodesOnly, selfOnly: true },
  "/corral.v1.MetricsService/GetNodeMetricsHistory": read,
  "/corral.v1.MetricsService/WatchNodeMetrics": read,
  "/corral.v1.MetricsService/ListLatestMetrics": read,
  "/corral.v1.ClustersService/CreateCluster": operate,
  "/corral.v1.ClustersService/ListClusters": peopleRead,
  "/corral.v1.ClustersService/GetCluster": peopleRead,
  "/corral.v1.ClustersService/WatchClusters": peopleRead,
  "/corral.v1.ClustersService/AddClusterNodes": operate,
  "/corral.v1.ClustersService/RemoveClusterNodes": operate,
  "/corral.v1.ClustersService/ProvisionCluster": operate,
  "/corral.v1.ClustersService/DeprovisionCluster": operate,
  "/corral.v1.ClustersService/DeleteCluster": operate,
  "/corral.v1.SessionService/WhoAmI": read,
  "/corral.v1.SessionService/WatchCluster": peopleRead,
  "/corral.v1.NodeOpsService/TailLogs": peopleRead,
  "/corral.v1.NodeOpsService/Exec": operate,
  "/corral.v1.NodeOpsService/SetPipelineRunning": operate,
  // Run state only (no argv, no env): every member, so that a udp_sender finds its receiver's port.
  "/corral.v1.PipelineRunsService/ListPipelines": read,
  "/corral.v1.PipelineRunsService/GetRun": read,
  "/corral.v1.PipelineRunsService/WatchPipelines": read,

  // Distributed LLM
  "/distributed_llm.NodeService/GetNodeInfo": read,
  "/distributed_llm.NodeService/GetPeers": read,
  "/distributed_llm.NodeService/GetMetrics": read,
  "/distributed_llm.NodeService/StreamMetrics": read,
  "/distributed_llm.DiscoveryService/DiscoverNodes": read,
  // Open to strangers on the table, like Join: the handler lets operators and the node itself through
  // and asks anyone else for a join token in the call metadata (`corral-join-token`).
  "/distributed_llm.DiscoveryService/RegisterWithCluster": {
    roles: everyone,
    anonymous: true,
    mutates: true,
  },
  "/distributed_llm.DiscoveryService/LeaveCluster": operateOrSelf,
  "/distributed_llm.DiscoveryService/GetClusterInfo": read,
  "/distributed_llm.TUIService/GetNodeList": read,
  "/distributed_llm.TUIService/GetModelList": read,
  "/distributed_llm.TUIService/StreamUpdates": read,
  "/distributed_llm.TUIService/ExecuteCommand": operate,

  // NanoPing
  "/nanopinggrpc.hub.HubClientService/getLocalNodeId": read,
  "/nanopinggrpc.hub.HubClientService/getNode": read,
  "/nanopinggrpc.hub.HubClientService/setNode": operate,
  "/nanopinggrpc.hub.HubClientService/authenticateByRequest": administer,
  "/nanopinggrpc.hub.HubClientService/disconnect": administer,
  "/nanopinggrpc.hub.HubClientService/streamConnectionState": read,
  "/nanopinggrpc.hub.HubServerService/getNodes": read,
  "/nanopinggrpc.hub.HubServerService/removeNode": operate,
  "/nanopinggrpc.hub.HubServerService/streamNodes": read,
  "/nanopinggrpc.hub.HubServerService/authenticationByRequests": operate,
  "/nanopinggrpc.pipeline.PipelinesService/getPipelines": readConfigs,
  "/nanopinggrpc.pipeline.PipelinesService/getPipelineById": readConfigs,
  "/nanopinggrpc.pipeline.PipelinesService/getPipelineByName": readConfigs,
  "/nanopinggrpc.pipeline.PipelinesService/getPipelineByRunId": readConfigs,
  "/nanopinggrpc.pipeline.PipelinesService/createPipeline": operateOrSelf,
  "/nanopinggrpc.pipeline.PipelinesService/updatePipeline": operateOrSelf,
  "/nanopinggrpc.pipeline.PipelinesService/deletePipeline": operateOrSelf,
  "/nanopinggrpc.pipeline.PipelinesService/startPipeline": operateOrSelf,
  "/nanopinggrpc.pipeline.PipelinesService/stopPipeline": operateOrSelf,
  "/nanopinggrpc.pipeline.PipelinesService/streamPipelines": readConfigs,
  "/nanopinggrpc.pipeline.PipelinesService/openLogStream": readRunsOfSelf,
  "/nanopinggrpc.pipeline.PipelinesService/openTelemetryStream": readRunsOfSelf,
  // A node's own log and its runs' logs: read like NodeAgent StreamLogs (people; not other nodes).
  "/nanopinggrpc.logging.LoggingService/openLogStream": peopleRead,
  "/nanopinggrpc.logging.LoggingService/downloadLogFile": peopleRead,

  // go-cart-actor
  "/messages.ControlPlane/Ping": read,
  "/messages.ControlPlane/Negotiate": { roles: operatorsAndNodes, mutates: true },
  "/messages.ControlPlane/GetCartIds": read,
  "/messages.ControlPlane/ConfirmOwner": { roles: operatorsAndNodes, mutates: true },
  "/messages.ControlPlane/Closing": operateOrSelf,

  // Pi-Controller
  // Open like Join: a new board has no certificate yet; the handler asks for a join token unless an
  // operator registers the node.
  "/picontroller.ControlPlane/RegisterNode": { roles: everyone, anonymous: true, mutates: true },
  "/picontroller.ControlPlane/SyncClusterState": read,
  "/picontroller.ControlPlane/RequestProvisioning": operate,
  "/picontroller.ControlPlane/ReportHealth": operateOrSelf,
  "/picontroller.NodeAgent/GetSystemMetrics": read,
  "/picontroller.NodeAgent/ControlGPIO": operate,
  "/picontroller.NodeAgent/ExecuteCommand": operate,
  "/picontroller.NodeAgent/StreamLogs": peopleRead,
  "/picontroller.NodeAgent/HealthCheck": read,

  // Standard services: probes and schema discovery need no identity.
  "/grpc.health.v1.Health/Check": open,
  "/grpc.health.v1.Health/List": open,
  "/grpc.health.v1.Health/Watch": open,
  "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo": open,
  "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo": open,
};

/** A method missing from the table is refused to everyone: forgetting an entry must not open a door. */
export const denyAll: AccessRule = { roles: [] };

export function accessRuleFor(path: string): AccessRule {
  return accessTable[path] ?? denyAll;
}
