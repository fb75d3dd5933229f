import { toJson } from "@bufbuild/protobuf";
import { timestampDate } from "@bufbuild/protobuf/wkt";
import type { Command } from "commander";
import { ClusterService, GetClusterStatusResponseSchema } from "../../gen/corral/v1/cluster_pb.ts";
import { globalsOf } from "../global-options.ts";
import { printJson } from "../output.ts";

export function registerStatusCommand(program: Command): void {
  program
    .command("status")
    .description("show the controller and a count of nodes by state")
    .action(async (_options: unknown, command: Command) => {
      const globals = globalsOf(command);
      const connection = await globals.connect();
      const status = await connection.call(connection.client(ClusterService).getClusterStatus({}));
      if (globals.output === "json") {
        printJson(toJson(GetClusterStatusResponseSchema, status));
        return;
      }
      const n = status.nodes;
      process.stdout.write(
        `cluster     ${status.clusterId}\n` +
          `controller  ${status.controllerName} (corral ${status.version})\n` +
          `started     ${status.startedAt === undefined ? "-" : timestampDate(status.startedAt).toISOString()}\n` +
          `store       ${status.store}, revision ${status.revision}\n` +
          `leader      ${status.isLeader ? "this controller" : status.leader || "none elected"}` +
          `${status.isLeader && status.leader !== "" ? ` (${status.leader})` : ""}\n` +
          `nodes       ${n?.total ?? 0} total: ${n?.ready ?? 0} ready, ${n?.pending ?? 0} pending, ` +
          `${n?.suspect ?? 0} suspect, ${n?.down ?? 0} down, ${n?.left ?? 0} left\n`,
      );
    });
}
