import { stat } from "node:fs/promises";
import type { SystemdAction, SystemdSpec } from "../../core/provisioning/provisioning-step.ts";
import { agentIdentity } from "../../host/run-as.ts";
import { describeExit, runProcess } from "./process-runner.ts";
import type { StepContext, StepResult } from "./step-context.ts";

/** The state that makes an action a no-op, and the `systemctl` query that reads it. */
const alreadyDone: Readonly<
  Record<SystemdAction, { query: "is-enabled" | "is-active"; states: string[] } | undefined>
> = {
  enable: { query: "is-enabled", states: ["enabled"] },
  disable: { query: "is-enabled", states: ["disabled"] },
  start: { query: "is-active", states: ["active"] },
  stop: { query: "is-active", states: ["inactive", "failed"] },
  restart: undefined,
};

/**
 * `systemd`: `systemctl <action> -- <unit>` as argv. Where systemd is not the running init (a container,
 * a board booted with another init), the step fails saying so instead of running systemctl against
 * nothing. enable/disable/start/stop first ask systemd and report "unchanged" when the unit is so already.
 */
export async function runSystemdStep(spec: SystemdSpec, ctx: StepContext): Promise<StepResult> {
  const booted = await stat(ctx.systemdRunDir).then(
    (s) => s.isDirectory(),
    () => false,
  );
  if (!booted) {
    return {
      status: "failed",
      message: `systemd is not running on this node (${ctx.systemdRunDir} is missing), so \`systemctl ${spec.action} ${spec.unit}\` cannot run`,
    };
  }
  const timeoutMs = spec.timeoutMs ?? ctx.defaultTimeoutMs;
  // systemctl needs the agent's own rights (root on a real node); its argv is fixed, never a plan's program.
  const common = {
    timeoutMs,
    killGraceMs: ctx.killGraceMs,
    signal: ctx.signal,
    runAs: agentIdentity(),
    ...(ctx.recorder === undefined ? {} : { recorder: ctx.recorder }),
  };
  const check = alreadyDone[spec.action];
  if (check !== undefined) {
    let state = "";
    const query = await runProcess({
      argv: [ctx.systemctl, check.query, "--", spec.unit],
      ...common,
      onOutput: (text) => {
        state += text;
      },
    });
    if (query.spawnError !== undefined)
      return { status: "failed", message: `systemd is running but ${query.spawnError}` };
    if (query.cancelled) return { status: "failed", message: describeExit(query, timeoutMs) };
    const current = state.trim().split(/\s+/)[0] ?? "";
    if (check.states.includes(current))
      return { status: "unchanged", message: `${spec.unit} is ${current} already` };
  }
  const result = await runProcess({
    argv: [ctx.systemctl, spec.action, "--", spec.unit],
    ...common,
    onOutput: (text) => ctx.output(text),
  });
  if (result.spawnError !== undefined)
    return { status: "failed", message: `systemd is running but ${result.spawnError}` };
  const ok = result.exitCode === 0 && !result.timedOut && !result.cancelled;
  return {
    status: ok ? "succeeded" : "failed",
    message: ok
      ? `systemctl ${spec.action} ${spec.unit}: done`
      : `systemctl ${spec.action} ${spec.unit}: ${describeExit(result, timeoutMs)}`,
    exitCode: result.exitCode ?? -1,
  };
}
