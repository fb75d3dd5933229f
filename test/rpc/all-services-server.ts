import { readdirSync } from "node:fs";
import type { DescService } from "@bufbuild/protobuf";
import { ServerCredentials } from "@grpc/grpc-js";
import { ControlPlane as CartControlPlane } from "../../src/gen/control_plane_pb.ts";
import { HubClientService } from "../../src/gen/hub_client_pb.ts";
import { HubServerService } from "../../src/gen/hub_server_pb.ts";
import { DiscoveryService, NodeService, TUIService } from "../../src/gen/node_pb.ts";
import { NodeAgent, ControlPlane as PiControlPlane } from "../../src/gen/picontroller_pb.ts";
import { PipelinesService } from "../../src/gen/pipelines_pb.ts";
import type { HealthRegistry } from "../../src/rpc/health/health-registry.ts";
import { mountHealth } from "../../src/rpc/health/health-service.ts";
import { mountReflection, type ReflectionServices } from "../../src/rpc/reflection/reflection-service.ts";
import { RpcServer } from "../../src/rpc/rpc-server.ts";

/**
 * corral's native services: every service of every file in src/gen/corral/v1, so a service added
 * there is reflected (and compared with buf's build) without touching this list.
 */
async function corralV1Services(): Promise<DescService[]> {
  const dir = new URL("../../src/gen/corral/v1/", import.meta.url);
  const files = readdirSync(dir)
    .filter((name) => name.endsWith("_pb.ts"))
    .sort();
  const services: DescService[] = [];
  for (const name of files) {
    const module = (await import(new URL(name, dir).href)) as Record<string, unknown>;
    for (const value of Object.values(module)) {
      if ((value as Partial<DescService> | null)?.kind === "service") services.push(value as DescService);
    }
  }
  return services;
}

/** Every published API service of corral (the controller's face), each in its own package. */
export const apiServices: readonly DescService[] = [
  ...(await corralV1Services()),
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
