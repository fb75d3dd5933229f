/**
 * (a) The baseline: plain grpc-js with @grpc/proto-loader (protobufjs) and callback handlers, written
 * the way grpc-js's own examples are, except that the stream honours backpressure as the adapter does.
 */
import { fileURLToPath } from "node:url";
import * as grpc from "@grpc/grpc-js";
import * as protoLoader from "@grpc/proto-loader";
import { reportReady } from "../child.ts";

interface Payload {
  payload: Buffer;
}
interface StreamRequest {
  count: number;
  size: number;
}

const definition = protoLoader.loadSync(fileURLToPath(new URL("../echo.proto", import.meta.url)), {
  keepCase: true,
  longs: String,
  enums: String,
  defaults: true,
  oneofs: true,
});
const echoService = (grpc.loadPackageDefinition(definition).bench as grpc.GrpcObject).v1 as grpc.GrpcObject;
const EchoService = echoService.EchoService as grpc.ServiceClientConstructor;

const implementation: grpc.UntypedServiceImplementation = {
  Echo(call: grpc.ServerUnaryCall<Payload, Payload>, callback: grpc.sendUnaryData<Payload>) {
    callback(null, { payload: call.request.payload });
  },
  Stream(call: grpc.ServerWritableStream<StreamRequest, Payload>) {
    const { count, size } = call.request;
    const message: Payload = { payload: Buffer.alloc(size, 0x61) };
    let sent = 0;
    const pump = (): void => {
      while (sent < count) {
        if (call.cancelled) return;
        sent++;
        if (!call.write(message)) {
          call.once("drain", pump);
          return;
        }
      }
      call.end();
    };
    pump();
  },
};

const server = new grpc.Server();
server.addService(EchoService.service, implementation);
server.bindAsync("127.0.0.1:0", grpc.ServerCredentials.createInsecure(), (error, port) => {
  if (error) throw error;
  reportReady({ port });
});
