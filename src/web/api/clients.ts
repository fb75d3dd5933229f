import type { DescService } from "@bufbuild/protobuf";
import { type Client, createClient, type Interceptor } from "@connectrpc/connect";
import { createGrpcWebTransport } from "@connectrpc/connect-web";
import { ClusterService } from "../../gen/corral/v1/cluster_pb.ts";
import { HardwareService } from "../../gen/corral/v1/hardware_pb.ts";
import { JoinService } from "../../gen/corral/v1/join_pb.ts";
import { MembersService } from "../../gen/corral/v1/members_pb.ts";
import { ModelsService } from "../../gen/corral/v1/models_pb.ts";
import { NodeOpsService } from "../../gen/corral/v1/node_ops_pb.ts";
import { NodesService } from "../../gen/corral/v1/nodes_pb.ts";
import { SessionService } from "../../gen/corral/v1/session_pb.ts";
import { TokensService } from "../../gen/corral/v1/tokens_pb.ts";

/** Every corral.v1 client the page uses, over gRPC-Web to the listener that served it. */
export interface Clients {
  readonly session: Client<typeof SessionService>;
  readonly cluster: Client<typeof ClusterService>;
  readonly nodes: Client<typeof NodesService>;
  readonly join: Client<typeof JoinService>;
  readonly tokens: Client<typeof TokensService>;
  readonly models: Client<typeof ModelsService>;
  readonly members: Client<typeof MembersService>;
  readonly nodeOps: Client<typeof NodeOpsService>;
  readonly hardware: Client<typeof HardwareService>;
  /** Any other corral.v1 service (the ones added after this page was written). */
  client<S extends DescService>(service: S): Client<S>;
}

export function createClients(token: string, baseUrl = window.location.origin): Clients {
  const bearer: Interceptor = (next) => (request) => {
    request.header.set("authorization", `Bearer ${token}`);
    return next(request);
  };
  const transport = createGrpcWebTransport({ baseUrl, interceptors: [bearer] });
  return {
    session: createClient(SessionService, transport),
    cluster: createClient(ClusterService, transport),
    nodes: createClient(NodesService, transport),
    join: createClient(JoinService, transport),
    tokens: createClient(TokensService, transport),
    models: createClient(ModelsService, transport),
    members: createClient(MembersService, transport),
    nodeOps: createClient(NodeOpsService, transport),
    hardware: createClient(HardwareService, transport),
    client: (service) => createClient(service, transport),
  };
}
