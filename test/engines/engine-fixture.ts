import type { NodeRecord } from "../../src/core/nodes/node.ts";
import { parsePlan } from "../../src/core/provisioning/provisioning-plan.ts";
import type { StepEvent, StepSpec } from "../../src/core/provisioning/provisioning-step.ts";
import type { NodeStepRunner, PlanSource } from "../../src/engines/provisioning-dispatcher.ts";
import { ProvisioningDispatcher } from "../../src/engines/provisioning-dispatcher.ts";
import { createLogger } from "../../src/observability/logger.ts";
import type { Store } from "../../src/store/store.ts";
import { type CoreFixture, makeCore } from "../core/core-fixture.ts";

export const silentLogger = createLogger({ level: "silent" });

/** Plans parsed from YAML texts, resolved by "name" or "name@version" like the controller's library. */
export function planSource(texts: readonly string[]): PlanSource {
  const plans = texts.map((text, i) => parsePlan(text, `plan-${i}.yaml`));
  return {
    async load() {
      return {
        plans,
        problems: [],
        resolve(ref: string) {
          const [name, version] = ref.split("@");
          const plan = plans.find((p) => p.name === name && (version === undefined || p.version === version));
          if (plan === undefined) throw new Error(`no plan ${ref} in the test's source`);
          return plan;
        },
      };
    },
  };
}

/** What a scripted node does with one step: succeed (with output), fail, or wait until cancelled. */
export type StepScript = { output?: string } | { fail: string } | "hang";

/**
 * A step runner standing in for the agents: it reports each step as running, then its output, then its
 * end, as `script` says for that node and step. Every call is recorded (node name, step names).
 */
export function scriptedRunner(
  script: (node: NodeRecord, step: StepSpec, index: number, call: number) => StepScript,
) {
  const calls: { node: string; steps: string[] }[] = [];
  const runner: NodeStepRunner = async function* (node, steps, run) {
    const call = calls.filter((c) => c.node === node.name).length + 1;
    calls.push({ node: node.name, steps: steps.map((s) => s.name) });
    for (const [index, step] of steps.entries()) {
      const at = 0;
      yield { index, status: "running", at } satisfies StepEvent;
      const what = script(node, step, index, call);
      if (what === "hang") {
        // The job may have been cancelled before this step began: an aborted signal fires no more events.
        if (!run.signal.aborted)
          await new Promise<void>((resolve) =>
            run.signal.addEventListener("abort", () => resolve(), { once: true }),
          );
        return;
      }
      if ("fail" in what) {
        yield { index, status: "failed", message: what.fail, exitCode: 1, at };
        return;
      }
      if (what.output !== undefined) yield { index, status: "running", output: what.output, at };
      yield { index, status: "succeeded", exitCode: 0, at };
    }
  };
  return { runner, calls };
}

export interface EngineFixture extends CoreFixture {
  nodes: NodeRecord[];
}

/** A store over SQLite in memory, a manual clock, and ready agents `names` at 10.0.0.i:7444. */
export async function withNodes(names: readonly string[]): Promise<EngineFixture> {
  const core = await makeCore();
  const nodes: NodeRecord[] = [];
  for (const [i, name] of names.entries())
    nodes.push(
      await core.registry.register({
        id: `id-${name}`,
        name,
        role: "agent",
        address: `10.0.0.${i + 1}`,
        port: 7444,
        status: "ready",
      }),
    );
  return Object.assign(core, { nodes });
}

/** A dispatcher over the fixture's store, running every node's steps with `runner`. */
export function dispatcherOf(
  f: CoreFixture,
  plans: PlanSource,
  runner: NodeStepRunner,
): ProvisioningDispatcher {
  return new ProvisioningDispatcher({
    store: f.store,
    registry: f.registry,
    clock: f.clock,
    logger: silentLogger,
    clusterId: "test-cluster",
    controllerNodeId: "controller-node",
    plans,
    remote: runner,
    local: runner,
  });
}

/** Every value a key took, in revision order, read back from the store's history (bounded by `signal`). */
export async function historyOf(
  store: Store,
  key: string,
  untilValue: (value: string) => boolean,
): Promise<string[]> {
  const values: string[] = [];
  const signal = AbortSignal.timeout(10_000);
  for await (const batch of store.watch(1, { prefix: key, signal })) {
    for (const event of batch) {
      if (event.key !== key || event.value === undefined) continue;
      values.push(event.value);
      if (untilValue(event.value)) return values;
    }
  }
  return values;
}
