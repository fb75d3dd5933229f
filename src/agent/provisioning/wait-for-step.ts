import { stat } from "node:fs/promises";
import { connect } from "node:net";
import { argvText, type WaitCondition, type WaitForSpec } from "../../core/provisioning/provisioning-step.ts";
import { agentIdentity } from "../../host/run-as.ts";
import { describeExit, runProcess } from "./process-runner.ts";
import { type StepContext, type StepResult, sleep } from "./step-context.ts";

/** One TCP attempt never waits longer than this, whatever the interval. */
const maxConnectMs = 5_000;

/**
 * `waitFor`: checks a condition every `interval` until it holds or `timeout` has passed. Each check is
 * bounded by the time left, so the step never outlives its timeout by more than the kill grace.
 */
export async function runWaitForStep(spec: WaitForSpec, ctx: StepContext): Promise<StepResult> {
  if (spec.root === true && ctx.rootSteps === false)
    return {
      status: "failed",
      message:
        "this step's check asks for root and this node refuses root steps (its agent runs with --no-root-steps)",
    };
  // A plan's program: the node's provisioning user, or the agent's own rights when the plan says root.
  const runAs = spec.root === true ? agentIdentity() : ctx.runAs;
  const started = Date.now();
  const deadline = started + spec.timeoutMs;
  let checks = 0;
  let last = "";
  for (;;) {
    if (ctx.signal.aborted) return { status: "failed", message: "cancelled" };
    checks++;
    const left = Math.max(1, deadline - Date.now());
    const outcome = await check(
      spec.condition,
      Math.min(left, Math.max(spec.intervalMs, 1_000)),
      runAs === undefined ? ctx : { ...ctx, runAs },
    );
    if (outcome === true) {
      const seconds = Math.round((Date.now() - started) / 100) / 10;
      return {
        status: "succeeded",
        message: `${what(spec.condition)} after ${checks} check${checks === 1 ? "" : "s"} (${seconds}s)`,
      };
    }
    last = outcome;
    const remaining = deadline - Date.now();
    if (remaining <= 0) {
      return {
        status: "failed",
        message: `timed out after ${Math.round(spec.timeoutMs / 100) / 10}s waiting until ${what(spec.condition)}; last check: ${last}`,
      };
    }
    await sleep(Math.min(spec.intervalMs, remaining), ctx.signal);
  }
}

function what(condition: WaitCondition): string {
  if ("exec" in condition) return `\`${argvText(condition.exec)}\` succeeded`;
  if ("file" in condition) return `${condition.file} exists`;
  return `${condition.tcp} accepts TCP`;
}

/** true when the condition holds, else why not. */
async function check(condition: WaitCondition, budgetMs: number, ctx: StepContext): Promise<true | string> {
  if ("file" in condition) {
    return stat(condition.file).then(
      () => true as const,
      (error: NodeJS.ErrnoException) =>
        error.code === "ENOENT" ? `${condition.file} does not exist` : error.message,
    );
  }
  if ("exec" in condition) {
    const result = await runProcess({
      argv: condition.exec,
      timeoutMs: budgetMs,
      killGraceMs: ctx.killGraceMs,
      signal: ctx.signal,
      ...(ctx.runAs === undefined ? {} : { runAs: ctx.runAs }),
      ...(ctx.recorder === undefined ? {} : { recorder: ctx.recorder }),
    });
    return result.exitCode === 0 && !result.timedOut ? true : describeExit(result, budgetMs);
  }
  return tcpCheck(condition.tcp, Math.min(budgetMs, maxConnectMs), ctx.signal);
}

function tcpCheck(target: string, timeoutMs: number, signal: AbortSignal): Promise<true | string> {
  const separator = target.lastIndexOf(":");
  const host = target.slice(0, separator).replace(/^\[(.*)\]$/, "$1");
  const port = Number(target.slice(separator + 1));
  return new Promise((resolve) => {
    const socket = connect({ host, port });
    const done = (result: true | string) => {
      clearTimeout(timer);
      signal.removeEventListener("abort", onAbort);
      socket.destroy();
      resolve(result);
    };
    const onAbort = () => done("cancelled");
    const timer = setTimeout(() => done(`no answer from ${target} within ${timeoutMs} ms`), timeoutMs);
    signal.addEventListener("abort", onAbort, { once: true });
    socket.once("connect", () => done(true));
    socket.once("error", (error: NodeJS.ErrnoException) => done(`${target}: ${error.code ?? error.message}`));
  });
}
