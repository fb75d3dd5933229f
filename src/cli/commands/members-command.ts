import { toJson } from "@bufbuild/protobuf";
import type { Command } from "commander";
import { CorralError } from "../../base/errors.ts";
import { enumText } from "../../client/format.ts";
import { type Member, MemberSchema, MembersService } from "../../gen/corral/v1/members_pb.ts";
import { NodeStatus } from "../../gen/corral/v1/nodes_pb.ts";
import { globalsOf } from "../global-options.ts";
import { printJson, renderTable } from "../output.ts";

function state(member: Member): string {
  const status = enumText(NodeStatus, member.status);
  return member.draining ? `${status}, draining (${member.drainReason})` : status;
}

function number(value: number, digits: number): string {
  return Number.isInteger(value) ? String(value) : value.toFixed(digits);
}

/**
 * The ownership directory from the command line: `corral members ls`, `corral owner KEY`,
 * `corral keys --member M`, `corral drain MEMBER` (members by host:port, node id or node name).
 */
export function registerMembersCommand(program: Command): void {
  const members = program
    .command("members")
    .description("the members of the ownership directory (nodes by host:port), their keys and load");

  members
    .command("ls")
    .alias("list")
    .description("list members: state, weight, keys owned, load against the fair share")
    .action(async (_options: unknown, command: Command) => {
      const globals = globalsOf(command);
      const connection = await globals.connect();
      const response = await connection.call(connection.client(MembersService).listMembers({}));
      if (globals.output === "json") {
        printJson({
          revision: response.revision,
          keyCount: response.keyCount,
          unownedKeyCount: response.unownedKeyCount,
          members: response.members.map((m) => toJson(MemberSchema, m)),
        });
        return;
      }
      process.stdout.write(
        renderTable(
          ["host", "name", "state", "weight", "keys", "claims", "load", "cpu"],
          response.members.map((m) => [
            m.host,
            m.name,
            state(m),
            number(m.weight, 2),
            String(m.keyCount),
            String(m.claimCount),
            m.eligible ? m.load.toFixed(2) : "-",
            m.cpuUsage === 0 && m.memoryUsedMb === 0n ? "-" : `${m.cpuUsage.toFixed(0)}%`,
          ]),
        ),
      );
      process.stdout.write(
        `${response.keyCount} key${response.keyCount === 1n ? "" : "s"} known` +
          (response.unownedKeyCount > 0n ? `, ${response.unownedKeyCount} without an owner` : "") +
          "\n",
      );
    });

  program
    .command("owner <key>")
    .description("the member that owns a key now (a claim, or rendezvous hashing over ready members)")
    .action(async (key: string, _options: unknown, command: Command) => {
      const globals = globalsOf(command);
      const connection = await globals.connect();
      const response = await connection.call(connection.client(MembersService).resolveOwner({ key }));
      if (globals.output === "json") {
        printJson({
          key,
          owner: response.owner === undefined ? null : toJson(MemberSchema, response.owner),
          reason: response.reason,
          known: response.known,
        });
        return;
      }
      if (response.owner === undefined) {
        throw new CorralError(
          "FAILED_PRECONDITION",
          `no member can own "${key}": none is ready and not draining`,
        );
      }
      const how = response.reason === "claim" ? "by claim" : "by rendezvous hashing";
      process.stdout.write(
        `${response.owner.host}  ${response.owner.name}  (${how}${response.known ? "" : "; the directory does not list this key"})\n`,
      );
    });

  program
    .command("keys")
    .description("the keys the directory knows that a member owns now")
    .requiredOption("--member <member>", "host:port, node id or node name")
    .option("--limit <n>", "at most this many keys", (v) => {
      const n = Number(v);
      if (!Number.isInteger(n) || n < 1)
        throw CorralError.invalidArgument("--limit", `"${v}" is not a positive whole number`);
      return n;
    })
    .action(async (options: { member: string; limit?: number }, command: Command) => {
      const globals = globalsOf(command);
      const connection = await globals.connect();
      const response = await connection.call(
        connection.client(MembersService).listKeys({ member: options.member, limit: options.limit ?? 0 }),
      );
      if (globals.output === "json") {
        printJson({
          member: response.member === undefined ? null : toJson(MemberSchema, response.member),
          keys: response.keys,
          more: response.more,
        });
        return;
      }
      process.stdout.write(response.keys.map((k) => `${k}\n`).join(""));
      if (response.more) process.stderr.write(`(more keys than --limit ${options.limit})\n`);
    });

  program
    .command("drain <member>")
    .description("stop giving a member keys and move its keys to their next owners (--undo to end it)")
    .option("--undo", "end the drain: the member receives keys again", false)
    .action(async (member: string, options: { undo: boolean }, command: Command) => {
      const globals = globalsOf(command);
      const connection = await globals.connect();
      const response = await connection.call(
        connection.client(MembersService).drain({ member, draining: !options.undo }),
      );
      if (globals.output === "json") {
        printJson({
          member: response.member === undefined ? null : toJson(MemberSchema, response.member),
          keysMoved: response.keysMoved,
        });
        return;
      }
      const who =
        response.member === undefined ? member : `${response.member.host} (${response.member.name})`;
      const moved = `${response.keysMoved} key${response.keysMoved === 1n ? "" : "s"} moved`;
      process.stdout.write(
        options.undo ? `${who} takes keys again: ${moved}\n` : `${who} is draining: ${moved}\n`,
      );
    });
}
