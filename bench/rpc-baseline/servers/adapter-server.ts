/**
 * (b) The same echo through corral's stack: RpcServer (grpc-js) + the protobuf-es adapter, with
 * Connect-style handlers written as corral's services are (plain init objects, an async generator).
 */
import { ServerCredentials } from "@grpc/grpc-js";
import { RpcServer } from "../../../src/rpc/rpc-server.ts";
import { reportReady } from "../child.ts";
import { EchoService } from "../gen/echo_pb.ts";

const server = new RpcServer().add(EchoService, {
  echo(request) {
    return { payload: request.payload };
  },
  async *stream(request) {
    const payload = new Uint8Array(request.size).fill(0x61);
    for (let i = 0; i < request.count; i++) yield { payload };
  },
});
reportReady({ port: await server.listen("127.0.0.1:0", ServerCredentials.createInsecure()) });
