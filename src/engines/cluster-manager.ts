import { randomBytes } from "node:crypto";
import { setTimeout as sleep } from "node:timers/promises";
import type { Clock } from "../base/clock.ts";
import { CorralError } from "../base/errors.ts";
import type {
  ClusterChange,
  ClusterEngine,
  ClusterMemberView,
  ClusterView,
  CreateClusterInput,
} from "../core/clusters/cluster-engine.ts";
import {
  type ClusterMemberRecord,
  type ClusterRecord,
  type ClusterRole,
  checkClusterName,
  checkMembers,
  checkParameters,
  checkPlans,
  checkServerUrl,
  clusterKey,
  clusterPrefix,
  decodeCluster,
  encodeCluster,
  isBusy,
  isInstalled,
  type MemberState,
  maskTokenLines,
  newMember,
  tokenFromOutput,
  withJob,
} from "../core/clusters/cluster-record.ts";
import type { NodeHealthBook } from "../core/nodes/node-health.ts";
import type { NodeRegistry } from "../core/nodes/node-registry.ts";
import type { JobView, PlanCatalog, ProvisioningEngine } from "../core/provisioning/provisioning-engine.ts";
import {
  decodeNodeRun,
  encodeNodeRun,
  isFinished,
  type NodeRunRecord,
  nodeRunKey,
} from "../core/provisioning/provisioning-job.ts";
import type { Plan } from "../core/provisioning/provisioning-plan.ts";
import { defaults } from "../defaults.ts";
import type { Logger } from "../observability/logger.ts";
import type { Store } from "../store/store.ts";

export interface ClusterManagerOptions {
  readonly store: Store;
  readonly registry: NodeRegistry;
  readonly health: NodeHealthBook;
  readonly engine: ProvisioningEngine;
  readonly clock: Clock;
  readonly logger: Logger;
  /** Agents provisioned at once when the cluster does not say; default `clusters.agentConcurrency`. */
  readonly agentConcurrency?: number;
  /** How often a running job is looked at; default 250 ms. */
  readonly pollMs?: number;
}

interface Running {
  readonly abort: AbortController;
  done: Promise<void>;
}

/** The outcome of running a plan (with its retries and rollback) on some nodes. */
interface PhaseResult {
  readonly view: JobView;
  readonly succeeded: ReadonlySet<string>;
}

const interruptedMessage = "interrupted by a controller stop; run it again";
const contentionRetries = 8;

/**
 * Clusters of nodes with a k3s lifecycle, over the provisioning engine: a rollout runs the server's plan
 * first, hands the token the server printed to the agents, runs the agents' plan on all of them at
 * once (at most `agentConcurrency` at a time, one provisioning job), and retries or rolls back a failed
 * node as its plan's `onFailure` says. Deprovisioning runs the uninstall plans, agents first.
 * The record in the store is the truth; a rollout cut off by a controller stop is marked failed.
 */
export class ClusterManager implements ClusterEngine, AsyncDisposable {
  readonly #o: ClusterManagerOptions;
  readonly #running = new Map<string, Running>();
  readonly #logger: Logger;
  #closed = false;

  constructor(options: ClusterManagerOptions) {
    this.#o = options;
    this.#logger = options.logger.child({ component: "clusters" });
  }

  /** Closes the books of rollouts a previous controller left running. */
  async start(): Promise<void> {
    const { items } = await this.#o.store.list(clusterPrefix);
    for (const kv of items) {
      const cluster = decodeCluster(kv.value);
      if (!isBusy(cluster.state)) continue;
      await this.#update(cluster.name, (current) => ({
        ...current,
        state: "failed",
        message: `${current.state === "provisioning" ? "provisioning" : "deprovisioning"} ${interruptedMessage}`,
        members: current.members.map((m) =>
          m.state === "provisioning" || m.state === "deprovisioning"
            ? { ...m, state: "failed", message: interruptedMessage }
            : m,
        ),
      }));
    }
  }

  async create(input: CreateClusterInput): Promise<ClusterView> {
    const name = checkClusterName(input.name);
    if (input.server === "") throw CorralError.invalidArgument("server", "is empty; name the server node");
    const server = await this.#o.registry.get(input.server);
    const members = [newMember(server.id, server.name, "server")];
    for (const agent of input.agents) {
      const node = await this.#o.registry.get(agent);
      members.push(newMember(node.id, node.name, "agent"));
    }
    checkMembers(members, defaults.clusters.maxNodes);
    const concurrency = this.#concurrency(input.agentConcurrency);
    const now = this.#o.clock.now();
    const record: ClusterRecord = {
      name,
      state: "new",
      message: "",
      plans: checkPlans(input.plans),
      parameters: checkParameters(input.parameters),
      serverUrl: checkServerUrl(input.serverUrl),
      agentConcurrency: concurrency,
      members,
      jobs: [],
      // k3s's cluster secret; the agents get what the server prints (the secure K10… form) when it does.
      secret: randomBytes(24).toString("hex"),
      joinToken: "",
      createdAt: now,
      updatedAt: now,
    };
    const { succeeded } = await this.#o.store.commit({
      compares: [{ key: clusterKey(name), modRevision: 0 }],
      ops: [{ type: "put", key: clusterKey(name), value: encodeCluster(record) }],
    });
    if (!succeeded) throw new CorralError("ALREADY_EXISTS", `cluster ${name} exists already`);
    this.#logger.info({ cluster: name, members: members.length }, "cluster created");
    return this.#view(record);
  }

  async list(): Promise<ClusterView[]> {
    const { items } = await this.#o.store.list(clusterPrefix);
    return Promise.all(items.map((kv) => this.#view(decodeCluster(kv.value))));
  }

  /**
   * The current clusters (or the one named) as snapshots, a "synced" marker, then each write to them, read
   * from the store's watch so every member's progress shows. A reader that lags beyond `maxLag` events gets
   * the store's RESOURCE_EXHAUSTED; the iterator ends when `signal` aborts.
   */
  async *watch(options: {
    name?: string;
    signal: AbortSignal;
    maxLag?: number;
  }): AsyncGenerator<ClusterChange> {
    const prefix = options.name ? clusterKey(checkClusterName(options.name)) : clusterPrefix;
    const { items, revision } = await this.#o.store.list(prefix);
    for (const kv of items) {
      if (options.name && kv.key !== prefix) continue;
      yield {
        kind: "snapshot",
        revision,
        name: decodeCluster(kv.value).name,
        view: await this.#view(decodeCluster(kv.value)),
      };
    }
    yield { kind: "synced", revision, name: "" };
    for await (const batch of this.#o.store.watch(revision + 1, {
      prefix,
      signal: options.signal,
      maxLag: options.maxLag ?? defaults.clusters.watchMaxLag,
    })) {
      for (const event of batch) {
        if (options.name && event.key !== prefix) continue;
        const name = event.key.slice(clusterPrefix.length);
        if (event.type === "delete" || event.value === undefined)
          yield { kind: "deleted", revision: event.revision, name };
        else
          yield {
            kind: "put",
            revision: event.revision,
            name,
            view: await this.#view(decodeCluster(event.value)),
          };
      }
    }
  }

  async get(name: string): Promise<ClusterView> {
    return this.#view(await this.#read(name));
  }

  async addNodes(name: string, nodes: readonly string[], role: ClusterRole): Promise<ClusterView> {
    if (nodes.length === 0) throw CorralError.invalidArgument("nodes", "is empty; name nodes to add");
    this.#assertIdle(name);
    const added: ClusterMemberRecord[] = [];
    for (const ref of nodes) {
      const node = await this.#o.registry.get(ref);
      added.push(newMember(node.id, node.name, role));
    }
    const record = await this.#update(name, (cluster) => {
      if (isBusy(cluster.state))
        throw new CorralError(
          "FAILED_PRECONDITION",
          `cluster ${name} is ${cluster.state}; wait for it to finish`,
        );
      const members = [...cluster.members, ...added];
      checkMembers(members, defaults.clusters.maxNodes);
      return { ...cluster, members };
    });
    return this.#view(record);
  }

  /**
   * Removes nodes from the cluster. Nodes that hold an installation have their uninstall plan run first
   * (in the background; the cluster shows it); the server goes last, only when no agent is installed.
   */
  async removeNodes(name: string, nodes: readonly string[], by: string): Promise<ClusterView> {
    if (nodes.length === 0) throw CorralError.invalidArgument("nodes", "is empty; name nodes to remove");
    this.#assertIdle(name);
    const cluster = await this.#read(name);
    if (isBusy(cluster.state))
      throw new CorralError(
        "FAILED_PRECONDITION",
        `cluster ${name} is ${cluster.state}; wait for it to finish`,
      );
    const leaving: ClusterMemberRecord[] = [];
    for (const ref of nodes) {
      const member = cluster.members.find((m) => m.nodeId === ref || m.nodeName === ref);
      if (member === undefined) throw CorralError.notFound(`node in cluster ${name}`, ref);
      leaving.push(member);
    }
    const ids = new Set(leaving.map((m) => m.nodeId));
    const staying = cluster.members.filter((m) => !ids.has(m.nodeId));
    if (
      leaving.some((m) => m.role === "server" && isInstalled(m)) &&
      staying.some((m) => m.role === "agent" && isInstalled(m))
    )
      throw new CorralError(
        "FAILED_PRECONDITION",
        `the server of cluster ${name} still has installed agents; deprovision the cluster, or remove them first`,
      );
    const installed = leaving.filter(isInstalled);
    if (installed.length === 0) {
      return this.#view(
        await this.#update(name, (c) => ({ ...c, members: c.members.filter((m) => !ids.has(m.nodeId)) })),
      );
    }
    const record = await this.#update(name, (c) => ({
      ...c,
      message: `removing ${installed.map((m) => m.nodeName).join(", ")}: running their uninstall plans`,
    }));
    this.#launch(name, async (signal) => {
      const current = await this.#read(name);
      const ok = await this.#uninstall(current, installed, by, signal);
      await this.#update(name, (c) => ({
        ...c,
        message:
          ok.size === installed.length
            ? ""
            : `could not uninstall ${installed
                .filter((m) => !ok.has(m.nodeId))
                .map((m) => m.nodeName)
                .join(", ")}; they stay in the cluster`,
        members: c.members.filter(
          (m) => !ids.has(m.nodeId) || (installed.some((i) => i.nodeId === m.nodeId) && !ok.has(m.nodeId)),
        ),
      }));
    });
    return this.#view(record);
  }

  async provision(name: string, by: string): Promise<ClusterView> {
    this.#assertIdle(name);
    const record = await this.#update(name, (cluster) => {
      if (isBusy(cluster.state))
        throw new CorralError(
          "FAILED_PRECONDITION",
          `cluster ${name} is ${cluster.state}; wait for it to finish`,
        );
      const servers = cluster.members.filter((m) => m.role === "server");
      if (servers.length !== 1)
        throw new CorralError(
          "FAILED_PRECONDITION",
          `cluster ${name} has no server; add one with role server`,
        );
      return { ...cluster, state: "provisioning", message: "starting" };
    });
    this.#launch(name, (signal) => this.#provision(name, by, signal));
    return this.#view(record);
  }

  async deprovision(name: string, by: string): Promise<ClusterView> {
    this.#assertIdle(name);
    const record = await this.#update(name, (cluster) => {
      if (isBusy(cluster.state))
        throw new CorralError(
          "FAILED_PRECONDITION",
          `cluster ${name} is ${cluster.state}; wait for it to finish`,
        );
      return { ...cluster, state: "deprovisioning", message: "starting" };
    });
    this.#launch(name, (signal) => this.#deprovision(name, by, signal));
    return this.#view(record);
  }

  async delete(name: string, force: boolean): Promise<void> {
    this.#assertIdle(name);
    const cluster = await this.#read(name);
    const installed = cluster.members.filter(isInstalled);
    if (!force && installed.length > 0)
      throw new CorralError(
        "FAILED_PRECONDITION",
        `cluster ${name} is installed on ${installed.map((m) => m.nodeName).join(", ")}; deprovision it first (or force)`,
      );
    await this.#o.store.commit({ ops: [{ type: "delete", key: clusterKey(name) }] });
    this.#logger.info({ cluster: name, force }, "cluster deleted");
  }

  /** Resolves when the operation running on the cluster (if any) has finished: for tests and shutdown. */
  async settled(name: string): Promise<void> {
    await this.#running.get(name)?.done;
  }

  async close(): Promise<void> {
    this.#closed = true;
    for (const running of this.#running.values()) running.abort.abort();
    await Promise.all([...this.#running.values()].map((r) => r.done));
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.close();
  }

  // --------------------------------------------------------------------------------- the rollout

  async #provision(name: string, by: string, signal: AbortSignal): Promise<void> {
    const start = await this.#read(name);
    const catalog = await this.#o.engine.listPlans();
    const serverPlan = findPlan(catalog, start.plans.server);
    const agentPlan = findPlan(catalog, start.plans.agent);
    const server = start.members.find((m) => m.role === "server");
    if (server === undefined) throw new CorralError("FAILED_PRECONDITION", "the cluster has no server");

    let cluster = start;
    if (server.state !== "provisioned" || cluster.joinToken === "") {
      await this.#setMembers(name, [server.nodeId], "provisioning", "");
      const serverUrl = cluster.serverUrl || (await this.#defaultServerUrl(server.nodeId));
      const result = await this.#runPhase(
        cluster,
        "server",
        serverPlan,
        [server],
        { ...cluster.parameters, token: cluster.secret },
        by,
        signal,
      );
      if (!result.succeeded.has(server.nodeId)) {
        await this.#update(name, (c) => ({
          ...c,
          state: "failed",
          message: `the server ${server.nodeName} failed; the agents were not provisioned`,
        }));
        return;
      }
      const run = result.view.nodes.find((n) => n.nodeId === server.nodeId);
      const printed =
        run === undefined ? undefined : tokenFromOutput(run.steps.map((s) => s.output).join("\n"));
      if (run !== undefined && printed !== undefined)
        await this.#maskToken(result.view.job.id, server.nodeId);
      cluster = await this.#update(name, (c) => ({
        ...c,
        serverUrl,
        joinToken: printed ?? c.secret,
        message: `server ${server.nodeName} provisioned${printed === undefined ? " (it printed no corral-token line: the agents get the cluster's secret)" : "; its token goes to the agents"}`,
      }));
    }

    const agents = cluster.members.filter((m) => m.role === "agent" && m.state !== "provisioned");
    if (agents.length > 0) {
      await this.#setMembers(
        name,
        agents.map((a) => a.nodeId),
        "provisioning",
        "",
      );
      await this.#runPhase(
        cluster,
        "agents",
        agentPlan,
        agents,
        { ...cluster.parameters, server: cluster.serverUrl, token: cluster.joinToken },
        by,
        signal,
      );
    }
    await this.#update(name, (c) => {
      const failed = c.members.filter((m) => m.state !== "provisioned");
      return {
        ...c,
        state: failed.length === 0 ? "ready" : "failed",
        message:
          failed.length === 0
            ? `${c.members.length} node${c.members.length === 1 ? "" : "s"} provisioned`
            : `not provisioned: ${failed.map((m) => `${m.nodeName} (${m.state})`).join(", ")}`,
      };
    });
  }

  async #deprovision(name: string, by: string, signal: AbortSignal): Promise<void> {
    const cluster = await this.#read(name);
    // Every member, installed or not as far as the record knows: uninstall plans are idempotent, and a
    // rollout cut off halfway may have left something the record does not show.
    const ok = await this.#uninstall(cluster, cluster.members, by, signal);
    await this.#update(name, (c) => {
      const left = c.members.filter((m) => !ok.has(m.nodeId));
      return {
        ...c,
        state: left.length === 0 ? "deprovisioned" : "failed",
        joinToken: left.length === 0 ? "" : c.joinToken,
        serverUrl: left.length === 0 && c.serverUrl === "" ? "" : c.serverUrl,
        message:
          left.length === 0
            ? "every node deprovisioned"
            : `not deprovisioned: ${left.map((m) => m.nodeName).join(", ")}`,
      };
    });
  }

  /** The uninstall plans on `members`: agents first, then the server. Returns the node ids that succeeded. */
  async #uninstall(
    cluster: ClusterRecord,
    members: readonly ClusterMemberRecord[],
    by: string,
    signal: AbortSignal,
  ): Promise<Set<string>> {
    const catalog = await this.#o.engine.listPlans();
    const ok = new Set<string>();
    const agents = members.filter((m) => m.role === "agent");
    const servers = members.filter((m) => m.role === "server");
    const parameters = {
      ...cluster.parameters,
      server: cluster.serverUrl,
      token: cluster.joinToken || cluster.secret,
    };
    for (const [phase, group, plan] of [
      ["uninstall agents", agents, cluster.plans.agentUninstall],
      ["uninstall server", servers, cluster.plans.serverUninstall],
    ] as const) {
      if (group.length === 0 || signal.aborted) continue;
      await this.#setMembers(
        cluster.name,
        group.map((m) => m.nodeId),
        "deprovisioning",
        "",
      );
      const result = await this.#runPhase(
        cluster,
        phase,
        findPlan(catalog, plan),
        group,
        parameters,
        by,
        signal,
        {
          success: "deprovisioned",
          failure: "failed",
        },
      );
      for (const id of result.succeeded) ok.add(id);
      // The server stays while an agent could not be uninstalled: it may still be serving that agent.
      if (phase === "uninstall agents" && result.succeeded.size < group.length) break;
    }
    return ok;
  }

  /**
   * One plan on some nodes as one provisioning job; failed nodes run again (RetryJob) as often as the
   * plan's `onFailure.retries` says, then its rollback plan runs on those still failed. Member states
   * are written as nodes finish.
   */
  async #runPhase(
    cluster: ClusterRecord,
    phase: string,
    plan: Plan,
    members: readonly ClusterMemberRecord[],
    given: Readonly<Record<string, string>>,
    by: string,
    signal: AbortSignal,
    outcome: { success: MemberState; failure: MemberState } = { success: "provisioned", failure: "failed" },
  ): Promise<PhaseResult> {
    const createdBy = `${by} (cluster ${cluster.name})`;
    let view = await this.#o.engine.runPlan({
      plan: `${plan.name}@${plan.version}`,
      nodes: members.map((m) => m.nodeId),
      all: false,
      selector: {},
      parameters: parametersFor(plan, given),
      dryRun: false,
      concurrency: Math.min(cluster.agentConcurrency, Math.max(1, members.length)),
      createdBy,
    });
    const jobId = view.job.id;
    await this.#update(cluster.name, (c) => ({
      ...c,
      jobs: withJob(c.jobs, { phase, jobId }),
      message: `${phase}: job ${jobId} (${plan.name}@${plan.version})`,
      members: c.members.map((m) =>
        members.some((x) => x.nodeId === m.nodeId) ? { ...m, lastJobId: jobId } : m,
      ),
    }));
    view = await this.#waitJob(jobId, signal);
    const policy = plan.onFailure;
    for (let retry = 1; retry <= (policy?.retries ?? 0); retry += 1) {
      if (signal.aborted || view.job.status === "succeeded" || view.job.status === "cancelled") break;
      const failed = view.nodes.filter((n) => n.status !== "succeeded").map((n) => n.nodeName);
      this.#logger.info({ cluster: cluster.name, job: jobId, retry, nodes: failed }, "retrying failed nodes");
      await this.#update(cluster.name, (c) => ({
        ...c,
        message: `${phase}: retry ${retry} of ${policy?.retries} on ${failed.join(", ")} (job ${jobId})`,
      }));
      if ((policy?.retryDelayMs ?? 0) > 0)
        await sleep(policy?.retryDelayMs, undefined, { signal, ref: false }).catch(() => undefined);
      if (signal.aborted) break;
      await this.#o.engine.retryJob(jobId, createdBy);
      view = await this.#waitJob(jobId, signal);
    }
    const succeeded = new Set(view.nodes.filter((n) => n.status === "succeeded").map((n) => n.nodeId));
    const byNode = new Map(view.nodes.map((n) => [n.nodeId, n]));
    const failed = members.filter((m) => !succeeded.has(m.nodeId));
    let rolledBack = new Set<string>();
    if (failed.length > 0 && policy?.rollback !== undefined && !signal.aborted) {
      rolledBack = await this.#rollback(cluster, policy.rollback, failed, given, createdBy, signal);
    }
    await this.#update(cluster.name, (c) => ({
      ...c,
      members: c.members.map((m) => {
        if (!members.some((x) => x.nodeId === m.nodeId)) return m;
        const run = byNode.get(m.nodeId);
        const attempts = run?.attempt ?? m.attempts;
        if (succeeded.has(m.nodeId)) return { ...m, state: outcome.success, message: "", attempts };
        const why = failureOf(run, jobId);
        return rolledBack.has(m.nodeId)
          ? { ...m, state: "rolled-back", message: `${why}; rolled back with ${policy?.rollback}`, attempts }
          : { ...m, state: outcome.failure, message: why, attempts };
      }),
    }));
    return { view, succeeded };
  }

  async #rollback(
    cluster: ClusterRecord,
    ref: string,
    failed: readonly ClusterMemberRecord[],
    given: Readonly<Record<string, string>>,
    createdBy: string,
    signal: AbortSignal,
  ): Promise<Set<string>> {
    try {
      const plan = findPlan(await this.#o.engine.listPlans(), ref);
      const started = await this.#o.engine.runPlan({
        plan: `${plan.name}@${plan.version}`,
        nodes: failed.map((m) => m.nodeId),
        all: false,
        selector: {},
        parameters: parametersFor(plan, given),
        dryRun: false,
        concurrency: Math.min(cluster.agentConcurrency, failed.length),
        createdBy,
      });
      await this.#update(cluster.name, (c) => ({
        ...c,
        jobs: withJob(c.jobs, { phase: "rollback", jobId: started.job.id }),
        message: `rolling back ${failed.map((m) => m.nodeName).join(", ")} with ${plan.name} (job ${started.job.id})`,
      }));
      const view = await this.#waitJob(started.job.id, signal);
      return new Set(view.nodes.filter((n) => n.status === "succeeded").map((n) => n.nodeId));
    } catch (error) {
      this.#logger.warn({ err: error, cluster: cluster.name, plan: ref }, "rollback could not run");
      return new Set();
    }
  }

  async #waitJob(jobId: string, signal: AbortSignal): Promise<JobView> {
    const pollMs = this.#o.pollMs ?? 250;
    for (;;) {
      const view = await this.#o.engine.getJob(jobId);
      if (isFinished(view.job.status)) return view;
      if (signal.aborted) {
        // The controller is stopping: the dispatcher marks the job interrupted; stop waiting for it.
        throw new CorralError("ABORTED", interruptedMessage);
      }
      await sleep(pollMs, undefined, { signal, ref: false }).catch(() => undefined);
    }
  }

  /** The server printed its token into the job's output: the stored copy keeps `corral-token: ***`. */
  async #maskToken(jobId: string, nodeId: string): Promise<void> {
    const key = nodeRunKey(jobId, nodeId);
    for (let attempt = 0; attempt < contentionRetries; attempt += 1) {
      const kv = await this.#o.store.get(key);
      if (kv === undefined) return;
      const run: NodeRunRecord = decodeNodeRun(kv.value);
      const masked = { ...run, steps: run.steps.map((s) => ({ ...s, output: maskTokenLines(s.output) })) };
      const { succeeded } = await this.#o.store.commit({
        compares: [{ key, modRevision: kv.modRevision }],
        ops: [{ type: "put", key, value: encodeNodeRun(masked) }],
      });
      if (succeeded) return;
    }
    this.#logger.warn({ job: jobId }, "could not mask the server's token in the job's output");
  }

  async #defaultServerUrl(nodeId: string): Promise<string> {
    const node = await this.#o.registry.get(nodeId);
    if (node.address === "")
      throw new CorralError(
        "FAILED_PRECONDITION",
        `server ${node.name} has no address; set the cluster's server URL`,
      );
    const host = node.address.includes(":") ? `[${node.address}]` : node.address;
    return `https://${host}:6443`;
  }

  // ------------------------------------------------------------------------------------ plumbing

  #launch(name: string, work: (signal: AbortSignal) => Promise<void>): void {
    const abort = new AbortController();
    const running: Running = { abort, done: Promise.resolve() };
    this.#running.set(name, running);
    running.done = (async () => {
      try {
        await work(abort.signal);
      } catch (error) {
        const message = abort.signal.aborted ? interruptedMessage : (error as Error).message;
        if (!abort.signal.aborted)
          this.#logger.error({ err: error, cluster: name }, "cluster operation failed");
        await this.#update(name, (c) => ({
          ...c,
          state: isBusy(c.state) ? "failed" : c.state,
          message,
          members: c.members.map((m) =>
            m.state === "provisioning" || m.state === "deprovisioning"
              ? { ...m, state: "failed", message }
              : m,
          ),
        })).catch(() => undefined);
      } finally {
        this.#running.delete(name);
      }
    })();
  }

  #assertIdle(name: string): void {
    if (this.#closed) throw new CorralError("UNAVAILABLE", "the controller is stopping");
    if (this.#running.has(name))
      throw new CorralError(
        "FAILED_PRECONDITION",
        `cluster ${name} is busy; wait for its operation to finish`,
      );
  }

  #concurrency(requested: number): number {
    const value = requested || (this.#o.agentConcurrency ?? defaults.clusters.agentConcurrency);
    if (!Number.isInteger(value) || value < 1 || value > defaults.provisioning.maxConcurrency)
      throw CorralError.invalidArgument(
        "agent_concurrency",
        `must be between 1 and ${defaults.provisioning.maxConcurrency}, got ${value}`,
      );
    return value;
  }

  async #setMembers(
    name: string,
    ids: readonly string[],
    state: MemberState,
    message: string,
  ): Promise<void> {
    await this.#update(name, (c) => ({
      ...c,
      members: c.members.map((m) => (ids.includes(m.nodeId) ? { ...m, state, message } : m)),
    }));
  }

  async #read(name: string): Promise<ClusterRecord> {
    const kv = await this.#o.store.get(clusterKey(checkClusterName(name)));
    if (kv === undefined) throw CorralError.notFound("cluster", name);
    return decodeCluster(kv.value);
  }

  /** Read, change, write if nobody wrote in between (another controller, another call); else again. */
  async #update(name: string, change: (cluster: ClusterRecord) => ClusterRecord): Promise<ClusterRecord> {
    const key = clusterKey(checkClusterName(name));
    for (let attempt = 0; attempt < contentionRetries; attempt += 1) {
      const kv = await this.#o.store.get(key);
      if (kv === undefined) throw CorralError.notFound("cluster", name);
      const next = { ...change(decodeCluster(kv.value)), updatedAt: this.#o.clock.now() };
      const { succeeded } = await this.#o.store.commit({
        compares: [{ key, modRevision: kv.modRevision }],
        ops: [{ type: "put", key, value: encodeCluster(next) }],
      });
      if (succeeded) return next;
    }
    throw new CorralError("ABORTED", `cluster ${name} kept changing under this update; try again`);
  }

  async #view(record: ClusterRecord): Promise<ClusterView> {
    const members = await Promise.all(
      record.members.map(async (member): Promise<ClusterMemberView> => {
        const node = await this.#o.registry.get(member.nodeId).catch(() => undefined);
        const health = await this.#o.health.get(member.nodeId).catch(() => undefined);
        return {
          ...member,
          nodeName: node?.name ?? member.nodeName,
          nodeStatus: node?.status ?? "",
          health: health?.status ?? "",
        };
      }),
    );
    const { secret: _secret, joinToken, members: _members, ...rest } = record;
    return {
      record: rest,
      members,
      hasJoinToken: joinToken !== "",
      healthyMembers: members.filter((m) => m.nodeStatus === "ready" && m.state === "provisioned").length,
      busy: this.#running.has(record.name),
    };
  }
}

/** "name" (its highest version) or "name@version", from the catalog. */
export function findPlan(catalog: PlanCatalog, ref: string): Plan {
  const [name, version] = ref.split("@");
  const matches = catalog.plans.filter(
    (p) => p.name === name && (version === undefined || p.version === version),
  );
  const best = matches.sort((a, b) => b.version.localeCompare(a.version, "en", { numeric: true }))[0];
  if (best === undefined) {
    const refused = catalog.problems.find((p) => p.message.includes(`${name}`));
    throw new CorralError(
      "FAILED_PRECONDITION",
      `no plan ${ref}${refused === undefined ? "" : ` (a plan file was refused: ${refused.message})`}`,
    );
  }
  return best;
}

/** The values a plan declares, of those given: a cluster's parameters serve several plans. */
function parametersFor(plan: Plan, given: Readonly<Record<string, string>>): Record<string, string> {
  const declared = new Set(plan.parameters.map((p) => p.name));
  return Object.fromEntries(
    Object.entries(given).filter(([name, value]) => declared.has(name) && value !== ""),
  );
}

function failureOf(run: NodeRunRecord | undefined, jobId: string): string {
  if (run === undefined) return `job ${jobId} did not run on it`;
  const step = run.steps.find((s) => s.status === "failed");
  return `job ${jobId}, attempt ${run.attempt}: ${step === undefined ? run.message || run.status : `step "${step.name}" failed: ${step.message}`}`;
}
