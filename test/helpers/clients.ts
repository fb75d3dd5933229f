import type { DescService } from "@bufbuild/protobuf";
import { type Client, createClient } from "@connectrpc/connect";
import { compressionGzip, createGrpcTransport } from "@connectrpc/connect-node";

/** A typed gRPC client over plaintext HTTP/2 (what `grpcurl -plaintext` speaks), gzip both ways. */
export function plaintextClient<S extends DescService>(service: S, port: number): Client<S> {
  const transport = createGrpcTransport({
    baseUrl: `http://127.0.0.1:${port}`,
    sendCompression: compressionGzip,
    acceptCompression: [compressionGzip],
    compressMinBytes: 0,
  });
  return createClient(service, transport);
}
