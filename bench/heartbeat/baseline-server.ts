/**
 * The baseline: a no-op `corral.v1.AgentService/Heartbeat` on the same stack as the controller
 * (RpcServer + the protobuf-es adapter, grpc-js, mTLS with a server certificate from a throwaway CA),
 * answering `{}` at once — no interceptors, no principal lookup, no liveness tracking.
 *
 *   baseline-server.ts <dir with ca.crt, server.crt (chain), server.key>
 */
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { AgentService } from "../../src/gen/corral/v1/agent_pb.ts";
import { RpcServer } from "../../src/rpc/rpc-server.ts";
import {
  RotatingCertificates,
  requiredClientCertificateCredentials,
} from "../../src/security/tls-credentials.ts";
import { serveParent } from "./children.ts";

const dir = process.argv[2];
if (dir === undefined) throw new Error("usage: baseline-server.ts <tls dir>");
const read = (name: string) => readFileSync(join(dir, name), "utf8");
const tls = new RotatingCertificates(read("ca.crt"), read("server.crt"), read("server.key"));

const server = new RpcServer().add(AgentService, {
  heartbeat() {
    return {};
  },
});
const port = await server.listen("127.0.0.1:0", requiredClientCertificateCredentials(tls));
serveParent({ address: `127.0.0.1:${port}`, pid: process.pid }, async () => server.forceClose());
