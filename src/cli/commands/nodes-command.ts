import { toJson } from "@bufbuild/protobuf";
import type { Command } from "commander";
import { CorralError } from "../../base/errors.ts";
import { ago, enumText, isoTime, metadataValueText } from "../../client/format.ts";
import {
  type Node,
  NodeRole,
  NodeSchema,
  NodeService,
  NodeStatus,
  NodesService,
} from "../../gen/corral/v1/nodes_pb.ts";
import { globalsOf } from "../global-options.ts";
import { type Field, printJson, renderFields, renderTable } from "../output.ts";

const statusName = (status: NodeStatus) => enumText(NodeStatus, status);

function address(node: Node): string {
  return node.port === 0 ? node.address || "-" : `${node.address}:${node.port}`;
}

function lastSeen(node: Node): string {
  return node.lastSeenAt === undefined ? "-" : `${ago(node.lastSeenAt)} ago`;
}

function megabytes(mb: bigint): string {
  return mb >= 1024n && mb % 1024n === 0n ? `${mb / 1024n} GiB` : `${mb} MiB`;
}

function bytes(n: bigint): string {
  const units = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
  let value = Number(n);
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit++;
  }
  return `${unit === 0 ? value : value.toFixed(1)} ${units[unit]}`;
}

function sorted<T>(record: Readonly<Record<string, T>>): [string, T][] {
  return Object.entries(record).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
}

/** `corral nodes show`: what an operator wants to read, not the JSON with its enum prefixes. */
export function describeNode(node: Node): string {
  const resources = node.resources;
  const resourceFields: Field[] =
    resources === undefined
      ? []
      : [
          ["cpu cores", String(resources.cpuCores)],
          ["memory", megabytes(resources.memoryMb)],
          [
            "gpus",
            resources.gpus.length === 0
              ? "-"
              : resources.gpus
                  .map((g) => `${g.name} (${megabytes(g.memoryMb)}${g.uuid ? `, ${g.uuid}` : ""})`)
                  .join(", "),
          ],
          ["layers", `${resources.usedLayers} used of ${resources.maxLayers}`],
          [
            "disks",
            resources.disks.length === 0
              ? "-"
              : resources.disks.map((d) => `${d.mount} ${bytes(d.sizeBytes)}`).join(", "),
          ],
        ];
  return renderFields([
    ["name", node.name],
    ["id", node.id],
    ["status", statusName(node.status)],
    ["role", enumText(NodeRole, node.role)],
    ["address", address(node)],
    ["version", node.version || "-"],
    ["services", node.services.map((s) => enumText(NodeService, s)).join(", ") || "-"],
    ["last seen", node.lastSeenAt === undefined ? "-" : `${lastSeen(node)} (${isoTime(node.lastSeenAt)})`],
    ["created", isoTime(node.createdAt)],
    ["updated", isoTime(node.updatedAt)],
    ["resources", resourceFields],
    ["metadata", sorted(node.metadata).map(([k, v]) => [k, metadataValueText(v)] as const)],
    ["labels", sorted(node.labels)],
  ]);
}

export function registerNodesCommand(program: Command): void {
  const nodes = program.command("nodes").description("list, inspect and remove the nodes of the cluster");

  nodes
    .command("ls")
    .alias("list")
    .description("list nodes")
    .option("--status <status...>", "only nodes in these states (pending, ready, suspect, down, left)")
    .option("--name <text>", "only nodes whose name contains the text")
    .action(async (options: { status?: string[]; name?: string }, command: Command) => {
      const globals = globalsOf(command);
      const statuses = (options.status ?? []).map((name) => {
        const value = NodeStatus[name.toUpperCase() as keyof typeof NodeStatus];
        if (value === undefined || value === NodeStatus.UNSPECIFIED)
          throw CorralError.invalidArgument(
            "--status",
            `"${name}" is not pending, ready, suspect, down or left`,
          );
        return value;
      });
      const connection = await globals.connect();
      const response = await connection.call(
        connection.client(NodesService).listNodes({ filter: { statuses, nameContains: options.name ?? "" } }),
      );
      if (globals.output === "json") {
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
            node.role === NodeRole.CONTROLLER ? "controller" : "agent",
            address(node),
            lastSeen(node),
          ]),
        ),
      );
    });

  nodes
    .command("get <node>")
    .alias("show")
    .description("show one node, by id or name")
    .action(async (node: string, _options: unknown, command: Command) => {
      const globals = globalsOf(command);
      const connection = await globals.connect();
      const response = await connection.call(connection.client(NodesService).getNode({ node }));
      if (response.node === undefined) throw new Error(`the controller answered without the node "${node}"`);
      if (globals.output === "json") printJson(toJson(NodeSchema, response.node));
      else process.stdout.write(describeNode(response.node));
    });

  nodes
    .command("rm <node>")
    .alias("remove")
    .description("remove a node, by id or name: its certificate stops working at once")
    .action(async (node: string, _options: unknown, command: Command) => {
      const globals = globalsOf(command);
      const connection = await globals.connect();
      const response = await connection.call(connection.client(NodesService).removeNode({ node }));
      const removed = response.node;
      if (globals.output === "json") {
        printJson(removed === undefined ? {} : toJson(NodeSchema, removed));
        return;
      }
      process.stdout.write(
        removed === undefined
          ? `removed node ${node}\n`
          : `removed node ${removed.name} (id ${removed.id}, ${address(removed)}, was ${statusName(removed.status)})\n`,
      );
    });
}
