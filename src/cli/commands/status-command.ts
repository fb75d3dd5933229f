import { toJson } from "@bufbuild/protobuf";
import { type Timestamp, timestampDate, timestampMs } from "@bufbuild/protobuf/wkt";
import type { Command } from "commander";
import { ClusterService, GetClusterStatusResponseSchema } from "../../gen/corral/v1/cluster_pb.ts";
import { NodeRole, NodeStatus, NodesService } from "../../gen/corral/v1/nodes_pb.ts";
import { globalsOf } from "../global-options.ts";
import { printJson } from "../output.ts";
import { certificateWarningLines } from "./certs-command.ts";

function formatBytes(bytes: number): string {
  if (bytes < 1024 * 1024) return `${Math.round(bytes / 1024)} KiB`;
  return `${(bytes / 1024 / 1024).toFixed(1)} MiB`;
}

/**
 * Ready nodes this controller has not heard from since it started: after a restart the store still
 * says "ready" for them until they heartbeat or their grace period runs out. Other controllers' nodes
 * count as heard (their liveness is their lease, not a heartbeat).
 */
function notHeardSince(
  nodes: readonly { role: NodeRole; lastSeenAt?: Timestamp | undefined }[],
  startedAt: Timestamp | undefined,
): number {
  if (startedAt === undefined) return 0;
  const since = timestampMs(startedAt);
  return nodes.filter(
    (node) =>
      node.role !== NodeRole.CONTROLLER &&
      (node.lastSeenAt === undefined || timestampMs(node.lastSeenAt) < since),
  ).length;
}

export function registerStatusCommand(program: Command): void {
  program
    .command("status")
    .description("show the controller, the controllers alive and which leads, the store, and nodes by state")
    .action(async (_options: unknown, command: Command) => {
      const globals = globalsOf(command);
      const connection = await globals.connect();
      const status = await connection.call(connection.client(ClusterService).getClusterStatus({}));
      if (globals.output === "json") {
        printJson(toJson(GetClusterStatusResponseSchema, status));
        return;
      }
      const n = status.nodes;
      const { nodes: readyNodes } = await connection.call(
        connection.client(NodesService).listNodes({ filter: { statuses: [NodeStatus.READY] } }),
      );
      const waiting = notHeardSince(readyNodes, status.startedAt);
      process.stdout.write(
        `cluster     ${status.clusterId}\n` +
          `controller  ${status.controllerName} (corral ${status.version})\n` +
          `started     ${status.startedAt === undefined ? "-" : timestampDate(status.startedAt).toISOString()}\n` +
          `store       ${status.store}, revision ${status.revision}\n` +
          `leader      ${status.isLeader ? "this controller" : status.leader || "none elected"}` +
          `${status.isLeader && status.leader !== "" ? ` (${status.leader})` : ""}\n` +
          `nodes       ${n?.total ?? 0} total: ${Math.max(0, (n?.ready ?? 0) - waiting)} ready, ` +
          `${waiting === 0 ? "" : `${waiting} not heard from since this controller started, `}` +
          `${n?.pending ?? 0} pending, ` +
          `${n?.suspect ?? 0} suspect, ${n?.down ?? 0} down, ${n?.left ?? 0} left\n`,
      );
      const health = status.storeHealth;
      if (health !== undefined)
        process.stdout.write(
          `store ok    ${health.healthy ? `yes, ${health.message}` : `NO: ${health.message}`}` +
            `${health.healthy ? `, revision ${health.revision}, ${formatBytes(Number(health.dbSizeBytes))}` : ""}\n`,
        );
      if (status.controllers.length > 0) {
        process.stdout.write(`controllers ${status.controllers.length}\n`);
        for (const c of status.controllers)
          process.stdout.write(
            `  ${c.isLeader ? "*" : " "} ${c.name.padEnd(20)} ${c.clusterAddress.padEnd(22)} corral ${c.version}` +
              `${c.startedAt === undefined ? "" : `, up since ${timestampDate(c.startedAt).toISOString()}`}\n`,
          );
      }
      // Certificates and CAs expiring within 30 days, a rotation under way (corral certs stats).
      process.stdout.write(await certificateWarningLines(connection));
    });
}
