import type { DescService } from "@bufbuild/protobuf";
import { ServerCredentials } from "@grpc/grpc-js";
import { ControlPlane as CartControlPlane } from "../../src/gen/control_plane_pb.ts";
import { AgentService } from "../../src/gen/corral/v1/agent_pb.ts";
import { ClusterService } from "../../src/gen/corral/v1/cluster_pb.ts";
import { JoinService } from "../../src/gen/corral/v1/join_pb.ts";
import { MembersService } from "../../src/gen/corral/v1/members_pb.ts";
import { ModelsService } from "../../src/gen/corral/v1/models_pb.ts";
import { NodesService } from "../../src/gen/corral/v1/nodes_pb.ts";
import { ProvisioningService } from "../../src/gen/corral/v1/provisioning_pb.ts";
import { TokensService } from "../../src/gen/corral/v1/tokens_pb.ts";
import { HubClientService } from "../../src/gen/hub_client_pb.ts";
import { HubServerService } from "../../src/gen/hub_server_pb.ts";
import { DiscoveryService, NodeService, TUIService } from "../../src/gen/node_pb.ts";
import { NodeAgent, ControlPlane as PiControlPlane } from "../../src/gen/picontroller_pb.ts";
import { PipelinesService } from "../../src/gen/pipelines_pb.ts";
import type { HealthRegistry } from "../../src/rpc/health/health-registry.ts";
import { mountHealth } from "../../src/rpc/health/health-service.ts";
import { mountReflection, type ReflectionServices } from "../../src/rpc/reflection/reflection-service.ts";
import { RpcServer } from "../../src/rpc/rpc-server.ts";

/** Every published API service of corral (the controller's face), each in its own package. */
export const apiServices: readonly DescService[] = [
  NodesService,
  ClusterService,
  JoinService,
  TokensService,
  ProvisioningService,
  MembersService,
  ModelsService,
  AgentService,
  HubClientService,
  HubServerService,
  PipelinesService,
  NodeService,
  DiscoveryService,
  TUIService,
  CartControlPlane,
  NodeAgent,
  PiControlPlane,
];

export interface AllServicesServer {
  readonly server: RpcServer;
  readonly port: number;
  readonly health: HealthRegistry;
  readonly reflection: ReflectionServices;
  close(): Promise<void>;
}

/**
 * A real RpcServer on 127.0.0.1:0 with every API service mounted with an empty implementation (every
 * method UNIMPLEMENTED), then reflection (both versions), then health — mounted last, to show that
 * reflection lists what was mounted after it.
 */
export async function startAllServicesServer(): Promise<AllServicesServer> {
  const server = new RpcServer();
  for (const service of apiServices) server.add(service, {});
  const reflection = mountReflection(server);
  const health = mountHealth(server);
  const port = await server.listen("127.0.0.1:0", ServerCredentials.createInsecure());
  return { server, port, health, reflection, close: () => server.close(1_000) };
}
