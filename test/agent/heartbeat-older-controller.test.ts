import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { durationFromMs } from "@bufbuild/protobuf/wkt";
import { controllerListenerTls, type ListenerTls } from "../../src/controller/tls-material.ts";
import { AgentService } from "../../src/gen/corral/v1/agent_pb.ts";
import { RpcServer } from "../../src/rpc/rpc-server.ts";
import { optionalClientCertificateCredentials } from "../../src/security/tls-credentials.ts";
import { eventually, joinWithToken, startTestAgent, type TestAgent } from "../helpers/agent.ts";
import { startTestController, type TestController } from "../helpers/controller.ts";

describe("an agent and a controller from before heartbeat streams", () => {
  let cluster: TestController;
  let node: TestAgent;
  let older: RpcServer;
  let tls: ListenerTls;
  let olderAddress: string;
  const heard: string[] = [];

  before(async () => {
    cluster = await startTestController();
    node = await startTestAgent({ name: "veteran" });
    await joinWithToken(cluster, node);
    // A controller of the same cluster (same CA) whose AgentService has Heartbeat only: HeartbeatStream
    // is answered UNIMPLEMENTED, as by a version that predates it.
    tls = await controllerListenerTls(cluster.controller.ca, "older", { host: "127.0.0.1", port: 0 });
    older = new RpcServer().add(AgentService, {
      async heartbeat() {
        // What the agent thinks of its link while this call is being answered.
        heard.push(node.agent.link.state.value);
        return { nextIn: durationFromMs(100) };
      },
      async updateSelf() {
        return {};
      },
    });
    olderAddress = `127.0.0.1:${await older.listen("127.0.0.1:0", optionalClientCertificateCredentials(tls.certificates))}`;
  });
  after(async () => {
    await node?.close();
    await older?.close(100);
    tls?.close();
    await cluster?.close();
  });

  it("keeps heartbeating by call when the controller does not know the stream", async () => {
    await node.agent.link.setControllerAddresses(olderAddress);
    await eventually(async () => (heard.length >= 5 ? true : undefined), 20_000, "heartbeats by call");
    assert.equal(node.agent.link.controllerAddress, olderAddress);
    // The refused stream is not a failure: the link never went DISCONNECTED.
    assert.deepEqual(new Set(heard), new Set(["CONNECTED"]));
  });
});
