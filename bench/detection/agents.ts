/**
 * A group of simulated agents in one process: each joins with the token (its own key, CSR and
 * certificate, as a real agent does), then keeps one AgentService/HeartbeatStream open on a TLS
 * connection of its own and sends a heartbeat on it every interval the controller answers. The parent
 * kills (SIGKILL) or freezes (SIGSTOP) the whole process: every agent's connection dies or goes silent
 * at the same moment.
 *
 *   agents.ts <cluster address> <token> <ca pem file> <group name> <count>
 */
import { readFileSync } from "node:fs";
import { create, fromBinary, toBinary } from "@bufbuild/protobuf";
import type * as grpc from "@grpc/grpc-js";
import { HeartbeatRequestSchema, HeartbeatResponseSchema } from "../../src/gen/corral/v1/agent_pb.ts";
import { connect, heartbeatStreamPath, joinCluster, mapLimit, raw } from "../heartbeat/agents.ts";

const [address, token, caFile, group, countText] = process.argv.slice(2);
if (address === undefined || token === undefined || caFile === undefined || group === undefined)
  throw new Error("usage: agents.ts <cluster address> <token> <ca pem file> <group name> <count>");
const caPem = readFileSync(caFile, "utf8");
const request = Buffer.from(
  toBinary(HeartbeatRequestSchema, create(HeartbeatRequestSchema, { cpuUsage: 0.1, memoryUsedMb: 256n })),
);
const names = Array.from({ length: Number(countText ?? 10) }, (_, i) => `${group}-${i}`);
const streams: grpc.ClientDuplexStream<Buffer, Buffer>[] = [];

await mapLimit(names, 8, async (name) => {
  const joined = await joinCluster(address, caPem, name, token);
  const client = connect(address, { caPem, ...joined });
  const stream = client.makeBidiStreamRequest(heartbeatStreamPath, raw, raw, {});
  let timer: NodeJS.Timeout | undefined;
  let first = true;
  const answered = new Promise<void>((resolve, reject) => {
    stream.on("data", (bytes: Buffer) => {
      const answer = fromBinary(HeartbeatResponseSchema, bytes);
      const nextInMs = Number(answer.nextIn?.seconds ?? 5n) * 1000 + (answer.nextIn?.nanos ?? 0) / 1e6;
      timer = setTimeout(() => stream.write(request), nextInMs);
      if (first) resolve();
      first = false;
    });
    stream.on("error", reject);
  });
  stream.on("error", () => clearTimeout(timer));
  stream.write(request);
  await answered;
  streams.push(stream);
});
process.send?.({ ready: streams.length });
process.on("disconnect", () => process.exit(0));
