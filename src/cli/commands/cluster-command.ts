import { setTimeout as sleep } from "node:timers/promises";
import { toJson } from "@bufbuild/protobuf";
import { type Command, Option } from "commander";
import { CorralError } from "../../base/errors.ts";
import type { Connection } from "../../client/connection.ts";
import { ago, enumText } from "../../client/format.ts";
import {
  type Cluster,
  ClusterRole,
  ClusterSchema,
  ClusterState,
  ClustersService,
  ListClustersResponseSchema,
  MemberState,
} from "../../gen/corral/v1/clusters_pb.ts";
import { globalsOf } from "../global-options.ts";
import { type Field, printJson, renderFields, renderTable } from "../output.ts";

const stateText = (state: ClusterState) => enumText(ClusterState, state);
const memberText = (state: MemberState) => enumText(MemberState, state).replace("_", "-");
const roleText = (role: ClusterRole) => enumText(ClusterRole, role);
const busy = (state: ClusterState) =>
  state === ClusterState.PROVISIONING || state === ClusterState.DEPROVISIONING;
/** `--wait` gives up after this long (a rollout's steps have their own timeouts). */
const maxWaitMs = 2 * 60 * 60 * 1000;

function collect(value: string, previous: string[] = []): string[] {
  return [...previous, value];
}

function pairs(values: readonly string[], flag: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const value of values) {
    const at = value.indexOf("=");
    if (at <= 0) throw CorralError.invalidArgument(flag, `"${value}" is not key=value`);
    out[value.slice(0, at)] = value.slice(at + 1);
  }
  return out;
}

/** The cluster, then a table of its members: what `status` prints. */
export function describeCluster(cluster: Cluster): string {
  const fields: Field[] = [
    ["cluster", cluster.name],
    ["state", stateText(cluster.state)],
    ["message", cluster.message || "-"],
    ["healthy", `${cluster.healthyMembers}/${cluster.members.length} (ready and provisioned)`],
    ["server URL", cluster.serverUrl || "-"],
    ["join token", cluster.hasJoinToken ? "handed out by the server (hidden)" : "none yet"],
    [
      "plans",
      `server ${cluster.plans?.server}, agent ${cluster.plans?.agent}, uninstall ${cluster.plans?.serverUninstall} / ${cluster.plans?.agentUninstall}`,
    ],
    ["agent concurrency", String(cluster.agentConcurrency)],
    [
      "parameters",
      Object.keys(cluster.parameters).length === 0
        ? "-"
        : Object.entries(cluster.parameters)
            .sort(([a], [b]) => (a < b ? -1 : 1))
            .map(([k, v]) => [k, v] as const),
    ],
    ["jobs", cluster.jobs.length === 0 ? "-" : cluster.jobs.map((j) => `${j.phase} #${j.jobId}`).join(", ")],
    ["updated", ago(cluster.updatedAt)],
  ];
  const table = renderTable(
    ["node", "role", "state", "node status", "health", "job", "tries", "message"],
    cluster.members.map((m) => [
      m.nodeName,
      roleText(m.role),
      memberText(m.state),
      m.nodeStatus || "gone",
      m.health || "-",
      m.lastJobId || "-",
      String(m.attempts),
      m.message || "-",
    ]),
  );
  return `${renderFields(fields)}\n${table}`;
}

async function waitSettled(connection: Connection, name: string): Promise<Cluster> {
  const deadline = Date.now() + maxWaitMs;
  let last = "";
  for (;;) {
    const { cluster } = await connection.call(connection.client(ClustersService).getCluster({ name }));
    if (cluster === undefined) throw new Error("the controller answered without the cluster");
    if (!busy(cluster.state) || Date.now() > deadline) return cluster;
    if (cluster.message !== last && cluster.message !== "") process.stderr.write(`${cluster.message}\n`);
    last = cluster.message;
    await sleep(500);
  }
}

function print(cluster: Cluster | undefined, json: boolean): void {
  if (cluster === undefined) throw new Error("the controller answered without the cluster");
  if (json) printJson(toJson(ClusterSchema, cluster));
  else process.stdout.write(describeCluster(cluster));
}

export function registerClusterCommand(program: Command): void {
  const cluster = program
    .command("cluster")
    .alias("clusters")
    .description("clusters of nodes with a k3s lifecycle: a server and agents, provisioned by plans");

  cluster
    .command("create <name> <server> [agents...]")
    .description(
      "a new cluster: its k3s server and agents (node ids or names); nothing runs until `provision`",
    )
    .option("-p, --param <key=value>", "a parameter for the plans that declare it (repeatable)", collect, [])
    .option("--server-url <url>", "the URL agents join (default https://<server address>:6443)", "")
    .option("--concurrency <n>", "agents provisioned at once (default 4)", "0")
    .option("--server-plan <plan>", "plan that installs the server", "")
    .option("--agent-plan <plan>", "plan that installs an agent", "")
    .option("--server-uninstall-plan <plan>", "plan that removes the server", "")
    .option("--agent-uninstall-plan <plan>", "plan that removes an agent", "")
    .action(
      async (
        name: string,
        serverNode: string,
        agents: string[],
        options: {
          param: string[];
          serverUrl: string;
          concurrency: string;
          serverPlan: string;
          agentPlan: string;
          serverUninstallPlan: string;
          agentUninstallPlan: string;
        },
        command: Command,
      ) => {
        const globals = globalsOf(command);
        const concurrency = Number(options.concurrency);
        if (!Number.isInteger(concurrency) || concurrency < 0)
          throw CorralError.invalidArgument("--concurrency", `"${options.concurrency}" is not a number`);
        const connection = await globals.connect();
        const { cluster: created } = await connection.call(
          connection.client(ClustersService).createCluster({
            name,
            server: serverNode,
            agents,
            parameters: pairs(options.param, "--param"),
            serverUrl: options.serverUrl,
            agentConcurrency: concurrency,
            plans: {
              server: options.serverPlan,
              agent: options.agentPlan,
              serverUninstall: options.serverUninstallPlan,
              agentUninstall: options.agentUninstallPlan,
            },
          }),
        );
        print(created, globals.output === "json");
      },
    );

  cluster
    .command("ls")
    .alias("list")
    .description("every cluster: state and members")
    .action(async (_options: unknown, command: Command) => {
      const globals = globalsOf(command);
      const connection = await globals.connect();
      const response = await connection.call(connection.client(ClustersService).listClusters({}));
      if (globals.output === "json") {
        printJson(toJson(ListClustersResponseSchema, response));
        return;
      }
      process.stdout.write(
        renderTable(
          ["name", "state", "server", "agents", "healthy", "message"],
          response.clusters.map((c) => [
            c.name,
            stateText(c.state),
            c.members.find((m) => m.role === ClusterRole.SERVER)?.nodeName ?? "-",
            String(c.members.filter((m) => m.role === ClusterRole.AGENT).length),
            `${c.healthyMembers}/${c.members.length}`,
            c.message || "-",
          ]),
        ),
      );
    });

  cluster
    .command("status <name>")
    .alias("show")
    .description("a cluster: its state, and every member's role, provisioning state and node health")
    .action(async (name: string, _options: unknown, command: Command) => {
      const globals = globalsOf(command);
      const connection = await globals.connect();
      const { cluster: found } = await connection.call(
        connection.client(ClustersService).getCluster({ name }),
      );
      print(found, globals.output === "json");
      if (found !== undefined && found.state === ClusterState.FAILED) process.exitCode = 1;
    });

  cluster
    .command("add <name> <nodes...>")
    .description("add nodes to a cluster (as agents unless --role server); `provision` installs them")
    .addOption(new Option("--role <role>", "their role").choices(["agent", "server"]).default("agent"))
    .action(async (name: string, nodes: string[], options: { role: string }, command: Command) => {
      const globals = globalsOf(command);
      const connection = await globals.connect();
      const { cluster: changed } = await connection.call(
        connection.client(ClustersService).addClusterNodes({
          name,
          nodes,
          role: options.role === "server" ? ClusterRole.SERVER : ClusterRole.AGENT,
        }),
      );
      print(changed, globals.output === "json");
    });

  cluster
    .command("rm <name> <nodes...>")
    .alias("remove")
    .description("remove nodes from a cluster; an installed node's uninstall plan runs first")
    .option("-w, --wait", "wait until the uninstall plans have run", false)
    .action(async (name: string, nodes: string[], options: { wait: boolean }, command: Command) => {
      const globals = globalsOf(command);
      const connection = await globals.connect();
      const client = connection.client(ClustersService);
      let { cluster: changed } = await connection.call(client.removeClusterNodes({ name, nodes }));
      if (options.wait) {
        const deadline = Date.now() + maxWaitMs;
        const leaving = (cluster: Cluster | undefined) =>
          cluster?.members.filter((m) => nodes.includes(m.nodeName) || nodes.includes(m.nodeId)) ?? [];
        // Until the named nodes are gone, or the uninstall ended for them (they stay when it failed):
        // the message moves on from "removing" to the uninstall job's while they are still deprovisioning.
        while (
          leaving(changed).length > 0 &&
          (changed?.message.startsWith("removing") ||
            leaving(changed).some((m) => m.state === MemberState.DEPROVISIONING)) &&
          Date.now() < deadline
        ) {
          await sleep(500);
          changed = (await connection.call(client.getCluster({ name }))).cluster;
        }
      }
      print(changed, globals.output === "json");
    });

  for (const [verb, description] of [
    ["provision", "run the plans: the server first, its token to the agents, then the agents in parallel"],
    ["deprovision", "run the uninstall plans: the agents first, then the server"],
  ] as const) {
    cluster
      .command(`${verb} <name>`)
      .description(description)
      .option("-w, --wait", "follow it until it finishes; exit 1 unless it succeeds", false)
      .action(async (name: string, options: { wait: boolean }, command: Command) => {
        const globals = globalsOf(command);
        const connection = await globals.connect(30_000);
        const client = connection.client(ClustersService);
        const { cluster: started } =
          verb === "provision"
            ? await connection.call(client.provisionCluster({ name }))
            : await connection.call(client.deprovisionCluster({ name }));
        if (!options.wait) {
          print(started, globals.output === "json");
          return;
        }
        const done = await waitSettled(connection, name);
        print(done, globals.output === "json");
        const wanted = verb === "provision" ? ClusterState.READY : ClusterState.DEPROVISIONED;
        if (done.state !== wanted) process.exitCode = 1;
      });
  }

  cluster
    .command("delete <name>")
    .description("forget a cluster; refused while it is installed anywhere, unless --force")
    .option("--force", "forget it even though nodes still run what it installed", false)
    .action(async (name: string, options: { force: boolean }, command: Command) => {
      const globals = globalsOf(command);
      const connection = await globals.connect();
      await connection.call(connection.client(ClustersService).deleteCluster({ name, force: options.force }));
      if (globals.output === "json") printJson({});
      else process.stdout.write(`cluster ${name} deleted\n`);
    });
}
