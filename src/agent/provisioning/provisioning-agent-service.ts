import type { ServiceImpl } from "@connectrpc/connect";
import { parseDuration } from "../../base/duration.ts";
import { CorralError } from "../../base/errors.ts";
import { checkStep, type StepSpec } from "../../core/provisioning/provisioning-step.ts";
import { defaults } from "../../defaults.ts";
import type { ProvisioningAgentService } from "../../gen/corral/v1/provisioning_pb.ts";
import type { Logger } from "../../observability/logger.ts";
import { eventToWire, stepFromWire } from "../../wire/provisioning-steps.ts";
import { runSteps, type StepRunnerOptions } from "./step-runner.ts";

export type AgentRunnerSettings = Omit<StepRunnerOptions, "signal" | "maxOutputBytes">;

/** The largest output cap a controller may ask an agent to keep per step. */
const maxOutputCap = 1024 * 1024;

/**
 * corral.v1.ProvisioningAgentService on the agent's mTLS listener (only its controller and admins get
 * through: see cluster-access.ts). One run at a time: a second caller is told who holds the node rather
 * than queued behind it. Every step is checked before the first one runs.
 */
export function provisioningAgentService(
  logger: Logger,
  settings: AgentRunnerSettings = {},
): Partial<ServiceImpl<typeof ProvisioningAgentService>> {
  let active: string | undefined;
  const limits = {
    maxTimeoutMs: parseDuration(defaults.provisioning.maxStepTimeout),
    maxFileContentBytes: defaults.provisioning.maxFileContentBytes,
  };
  return {
    async *runSteps(request, ctx) {
      if (request.steps.length === 0) throw CorralError.invalidArgument("steps", "is empty");
      if (request.steps.length > defaults.provisioning.maxSteps)
        throw CorralError.invalidArgument("steps", `more than ${defaults.provisioning.maxSteps} steps`);
      if (request.maxOutputBytes < 0 || request.maxOutputBytes > maxOutputCap)
        throw CorralError.invalidArgument("max_output_bytes", `must be between 0 and ${maxOutputCap}`);
      const steps: StepSpec[] = request.steps.map((message, i) => {
        const field = `steps[${i}]`;
        const step = stepFromWire(message, field);
        checkStep(step, field, limits);
        return step;
      });
      if (active !== undefined) {
        throw new CorralError(
          "FAILED_PRECONDITION",
          `this node is running provisioning job ${active || "(unnamed)"}; one run at a time`,
        );
      }
      const job = request.jobId;
      active = job;
      const log = logger.child({ job, steps: steps.length });
      log.info("provisioning run started");
      try {
        for await (const event of runSteps(steps, {
          ...settings,
          signal: ctx.signal,
          maxOutputBytes: request.maxOutputBytes || defaults.provisioning.maxOutputBytes,
        })) {
          if (event.output === undefined && event.status !== "running") {
            log.info(
              { step: event.index + 1, status: event.status, message: event.message },
              "provisioning step ended",
            );
          }
          yield eventToWire(event);
        }
        log.info("provisioning run ended");
      } finally {
        if (ctx.signal.aborted) log.warn("provisioning run cancelled by the caller");
        active = undefined;
      }
    },
  };
}
