import { toJson } from "@bufbuild/protobuf";
import { timestampMs } from "@bufbuild/protobuf/wkt";
import type { Command } from "commander";
import { formatDuration } from "../../core/duration.ts";
import { type Node, NodeSchema, NodeStatus, NodesService } from "../../gen/corral/v1/nodes_pb.ts";
import { controllerClient, fromConnectError } from "../client.ts";
import { parseOutputFormat, printJson, renderTable } from "../output.ts";

interface GlobalOptions {
  server?: string;
  output: string;
}

const statusName = (status: NodeStatus) => NodeStatus[status].toLowerCase();

function age(node: Node): string {
  return node.lastSeenAt === undefined
    ? "-"
    : `${formatDuration(Math.max(0, Date.now() - timestampMs(node.lastSeenAt)))} ago`;
}

export function registerNodesCommand(program: Command): void {
  const nodes = program.command("nodes").description("list and inspect the nodes of the cluster");

  nodes
    .command("ls")
    .alias("list")
    .description("list nodes")
    .option("--status <status...>", "only nodes in these states (pending, ready, suspect, down, left)")
    .option("--name <text>", "only nodes whose name contains the text")
    .action(async (options: { status?: string[]; name?: string }, command: Command) => {
      const global = command.optsWithGlobals<GlobalOptions>();
      const output = parseOutputFormat(global.output);
      const client = controllerClient(
        NodesService,
        global.server === undefined ? {} : { server: global.server },
      );
      const statuses = (options.status ?? []).map((name) => {
        const value = NodeStatus[name.toUpperCase() as keyof typeof NodeStatus];
        if (value === undefined)
          throw new Error(`--status: "${name}" is not pending, ready, suspect, down or left`);
        return value;
      });
      const response = await client
        .listNodes({ filter: { statuses, nameContains: options.name ?? "" } })
        .catch((error: unknown) => {
          throw fromConnectError(error, global.server ?? "the default bridge");
        });
      if (output === "json") {
        printJson({ revision: response.revision, nodes: response.nodes.map((n) => toJson(NodeSchema, n)) });
        return;
      }
      process.stdout.write(
        renderTable(
          ["name", "id", "status", "role", "address", "last seen"],
          response.nodes.map((node) => [
            node.name,
            node.id,
            statusName(node.status),
            node.role === 1 ? "controller" : "agent",
            node.port === 0 ? node.address || "-" : `${node.address}:${node.port}`,
            age(node),
          ]),
        ),
      );
    });

  nodes
    .command("get <node>")
    .description("show one node, by id or name")
    .action(async (node: string, _options: unknown, command: Command) => {
      const global = command.optsWithGlobals<GlobalOptions>();
      const output = parseOutputFormat(global.output);
      const client = controllerClient(
        NodesService,
        global.server === undefined ? {} : { server: global.server },
      );
      const response = await client.getNode({ node }).catch((error: unknown) => {
        throw fromConnectError(error, global.server ?? "the default bridge");
      });
      const json = response.node === undefined ? {} : toJson(NodeSchema, response.node);
      if (output === "json") printJson(json);
      else
        process.stdout.write(
          `${Object.entries(json as Record<string, unknown>)
            .map(([k, v]) => `${k}: ${JSON.stringify(v)}`)
            .join("\n")}\n`,
        );
    });
}
