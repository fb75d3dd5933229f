import { stat } from "node:fs/promises";
import { argvText, type ExecSpec } from "../../core/provisioning/provisioning-step.ts";
import { agentIdentity } from "../../host/run-as.ts";
import { describeExit, runProcess } from "./process-runner.ts";
import type { StepContext, StepResult } from "./step-context.ts";

/**
 * `exec`: runs argv unless a guard says it is done already (`creates` exists, `unless` exits 0). As the
 * node's provisioning user, or with the agent's own rights (root on a real node) when the plan says
 * `root: true` and the node allows root steps.
 */
export async function runExecStep(spec: ExecSpec, ctx: StepContext): Promise<StepResult> {
  const timeoutMs = spec.timeoutMs ?? ctx.defaultTimeoutMs;
  if (spec.root === true && ctx.rootSteps === false)
    return {
      status: "failed",
      message:
        "this step asks for root and this node refuses root steps (its agent runs with --no-root-steps); run the plan on another node or drop root: true from the step",
    };
  const runAs = spec.root === true ? agentIdentity() : ctx.runAs;
  if (spec.creates !== undefined) {
    const exists = await stat(spec.creates).then(
      () => true,
      () => false,
    );
    if (exists) return { status: "unchanged", message: `creates: ${spec.creates} exists` };
  }
  const common = {
    ...(spec.cwd === undefined ? {} : { cwd: spec.cwd }),
    ...(spec.env === undefined ? {} : { env: spec.env }),
    timeoutMs,
    killGraceMs: ctx.killGraceMs,
    signal: ctx.signal,
    ...(runAs === undefined ? {} : { runAs }),
    ...(ctx.recorder === undefined ? {} : { recorder: ctx.recorder }),
  };
  if (spec.unless !== undefined) {
    const guard = await runProcess({ argv: spec.unless, ...common });
    if (guard.cancelled) return { status: "failed", message: describeExit(guard, timeoutMs) };
    if (guard.spawnError !== undefined) return { status: "failed", message: `unless: ${guard.spawnError}` };
    if (guard.exitCode === 0)
      return { status: "unchanged", message: `unless: \`${argvText(spec.unless)}\` succeeded` };
  }
  const result = await runProcess({ argv: spec.argv, ...common, onOutput: (text) => ctx.output(text) });
  const ok = result.exitCode === 0 && !result.timedOut && !result.cancelled;
  return {
    status: ok ? "succeeded" : "failed",
    message: ok ? "exit code 0" : describeExit(result, timeoutMs),
    exitCode: result.exitCode ?? -1,
  };
}
