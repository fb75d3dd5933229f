import { toJson } from "@bufbuild/protobuf";
import { durationFromMs } from "@bufbuild/protobuf/wkt";
import { type Command, Option } from "commander";
import { parseDuration } from "../../base/duration.ts";
import { CorralError } from "../../base/errors.ts";
import { ago, enumText, isoTime, until } from "../../client/format.ts";
import { tokenLimits } from "../../core/admission/tokens.ts";
import { defaults } from "../../defaults.ts";
import {
  CreateTokenResponseSchema,
  ListTokensResponseSchema,
  Role,
  type TokenInfo,
  TokenInfoSchema,
  TokensService,
} from "../../gen/corral/v1/tokens_pb.ts";
import { globalsOf } from "../global-options.ts";
import { printJson, renderTable } from "../output.ts";

const roles = { node: Role.NODE, viewer: Role.VIEWER, operator: Role.OPERATOR, admin: Role.ADMIN } as const;
const jsonOptions = { alwaysEmitImplicit: true } as const;

export function tokenState(info: TokenInfo, now = Date.now()): string {
  if (info.revoked) return "revoked";
  if (info.expiresAt !== undefined && until(info.expiresAt, now) === "expired") return "expired";
  if (info.usesAllowed > 0 && info.usesLeft <= 0) return "used up";
  return "active";
}

function usesText(info: TokenInfo): string {
  if (info.role !== Role.NODE) return "-";
  return info.usesAllowed === 0 ? "unlimited" : `${info.usesLeft}/${info.usesAllowed}`;
}

function parseTtl(text: string): number {
  const ms = parseDuration(text, "--ttl");
  if (ms <= 0) throw CorralError.invalidArgument("--ttl", "must be more than 0, e.g. 1h");
  if (ms > tokenLimits.maxTtlMs) throw CorralError.invalidArgument("--ttl", `"${text}" is more than 30d`);
  return ms;
}

function parseUses(text: string): number {
  const trimmed = text.trim();
  const uses = /^\d+$/.test(trimmed) ? Number(trimmed) : Number.NaN;
  if (!Number.isSafeInteger(uses) || uses > tokenLimits.maxUses) {
    throw CorralError.invalidArgument(
      "--uses",
      `"${text}" is not a number of uses from 0 (unlimited) to ${tokenLimits.maxUses}`,
    );
  }
  return uses;
}

export function registerTokenCommand(program: Command): void {
  const token = program
    .command("token")
    .alias("tokens")
    .description("join tokens for nodes and access tokens for operators");

  token
    .command("create")
    .description("create a token; only the token goes to stdout (TOKEN=$(corral token create))")
    .option(
      "--ttl <duration>",
      "how long the token works, e.g. 30m, 1h, 7d (at most 30d)",
      defaults.identity.tokenTtl,
    )
    .option("--uses <n>", "how many nodes may join with it; 0: unlimited until it expires (join tokens)", "0")
    .addOption(
      new Option("--role <role>", "node: a join token; viewer, operator, admin: an access token")
        .choices(Object.keys(roles))
        .default("node"),
    )
    .option("--description <text>", "what the token is for", "")
    .action(
      async (
        options: { ttl: string; uses: string; role: keyof typeof roles; description: string },
        command: Command,
      ) => {
        const globals = globalsOf(command);
        const ttlMs = parseTtl(options.ttl);
        const uses = parseUses(options.uses);
        if (options.role !== "node" && uses !== 0) {
          throw CorralError.invalidArgument("--uses", "only join tokens (--role node) have a number of uses");
        }
        const connection = await globals.connect();
        let install: string | null = null;
        const response = await connection.call(
          connection.client(TokensService).createToken(
            {
              role: roles[options.role],
              ttl: durationFromMs(ttlMs),
              uses,
              description: options.description,
            },
            { onHeader: (headers) => (install = headers.get("corral-install-command")) },
          ),
        );
        if (globals.output === "json") {
          printJson(toJson(CreateTokenResponseSchema, response, jsonOptions));
          return;
        }
        process.stdout.write(`${response.token}\n`);
        const info = response.info;
        if (info !== undefined) {
          const kind = info.role === Role.NODE ? "join token" : `${enumText(Role, info.role)} access token`;
          process.stderr.write(
            `created ${kind} ${info.id}: expires in ${until(info.expiresAt)} (${isoTime(info.expiresAt)}), ` +
              `${info.role === Role.NODE ? (info.usesAllowed === 0 ? "unlimited uses" : `${info.usesAllowed} uses`) : "no use limit"}; ` +
              `cluster CA ${response.caFingerprint}\n` +
              "the token is shown only now: the controller keeps just its hash\n",
          );
          if (install !== null && info.role === Role.NODE)
            process.stderr.write(
              `on a node with Node.js 20, install corral and join with:\n  ${install} | sh -s -- --token ${response.token}\n`,
            );
        }
      },
    );

  token
    .command("ls")
    .alias("list")
    .description("list tokens that still work")
    .option("--all", "also revoked and expired tokens", false)
    .action(async (options: { all: boolean }, command: Command) => {
      const globals = globalsOf(command);
      const connection = await globals.connect();
      const response = await connection.call(
        connection.client(TokensService).listTokens({ includeExpired: options.all }),
      );
      if (globals.output === "json") {
        printJson(toJson(ListTokensResponseSchema, response, jsonOptions));
        return;
      }
      const now = Date.now();
      process.stdout.write(
        renderTable(
          ["id", "role", "uses left", "description", "created by", "age", "expires in", "state"],
          response.tokens.map((info) => [
            info.id,
            enumText(Role, info.role),
            usesText(info),
            info.description || "-",
            info.createdBy || "-",
            ago(info.createdAt, now),
            until(info.expiresAt, now),
            tokenState(info, now),
          ]),
        ),
      );
    });

  token
    .command("revoke <id>")
    .alias("rm")
    .description("revoke a token at once (see corral token ls for ids)")
    .action(async (id: string, _options: unknown, command: Command) => {
      const globals = globalsOf(command);
      const connection = await globals.connect();
      const response = await connection.call(connection.client(TokensService).revokeToken({ id }));
      const info = response.info;
      if (globals.output === "json") {
        printJson(info === undefined ? {} : toJson(TokenInfoSchema, info, jsonOptions));
        return;
      }
      process.stdout.write(
        info === undefined
          ? `revoked token ${id}\n`
          : `revoked ${enumText(Role, info.role)} token ${info.id}${info.description ? ` (${info.description})` : ""}\n`,
      );
    });
}
