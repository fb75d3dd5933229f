import { runSteps } from "../agent/provisioning/step-runner.ts";
import { CorralError } from "../base/errors.ts";
import type { NodeStepRunner } from "../engines/provisioning-dispatcher.ts";
import type { AgentReach } from "../faces/face-context.ts";
import { ProvisioningAgentService } from "../gen/corral/v1/provisioning_pb.ts";
import type { ProcessRecorder } from "../host/process-ledger.ts";
import { fromConnectError } from "../rpc/connect-errors.ts";
import { eventFromWire, stepToWire } from "../wire/provisioning-steps.ts";

export type { NodeStepRunner };

/** The controller calling the node's agent (ProvisioningAgentService/RunSteps over mTLS). */
export function agentStepRunner(agents: AgentReach): NodeStepRunner {
  return async function* (node, steps, run) {
    const client = await agents.client(ProvisioningAgentService, node);
    const stream = client.runSteps(
      { jobId: run.jobId, steps: steps.map(stepToWire), maxOutputBytes: run.maxOutputBytes },
      // Steps may run for a long time: no deadline; cancelling the job aborts the call.
      { signal: run.signal, timeoutMs: 0 },
    );
    try {
      for await (const message of stream) yield eventFromWire(message);
    } catch (error) {
      const corral = fromConnectError(error);
      if (corral.code === "UNAVAILABLE")
        throw new CorralError(
          "UNAVAILABLE",
          `node ${node.name} (${node.address}:${node.port}) cannot be reached: ${corral.message}`,
        );
      if (corral.code === "UNIMPLEMENTED")
        throw new CorralError(
          "UNIMPLEMENTED",
          `the agent on ${node.name} (version ${node.version || "unknown"}) cannot run provisioning steps`,
        );
      throw corral;
    }
  };
}

/** The controller's own node: the same step runner the agents use, in this process. */
export function localStepRunner(recorder?: ProcessRecorder): NodeStepRunner {
  return (_node, steps, run) =>
    runSteps(steps, {
      signal: run.signal,
      maxOutputBytes: run.maxOutputBytes,
      ...(recorder === undefined ? {} : { recorder }),
    });
}
