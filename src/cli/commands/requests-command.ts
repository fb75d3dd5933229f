import { toJson } from "@bufbuild/protobuf";
import type { Command } from "commander";
import { CorralError } from "../../base/errors.ts";
import { fromConnectError } from "../../client/connection.ts";
import { ago, enumText, metadataText, shortFingerprint, until } from "../../client/format.ts";
import {
  JoinRequestState,
  JoinService,
  ListJoinRequestsResponseSchema,
  type PendingJoin,
  PendingJoinSchema,
} from "../../gen/corral/v1/join_pb.ts";
import { globalsOf } from "../global-options.ts";
import { printJson, renderTable } from "../output.ts";

const jsonOptions = { alwaysEmitImplicit: true } as const;

const stateName = (request: PendingJoin) => enumText(JoinRequestState, request.state);

function expiresIn(request: PendingJoin, now: number): string {
  return request.state === JoinRequestState.PENDING ? until(request.expiresAt, now) : "-";
}

/** One line per event for `requests watch` in table mode. */
function watchLine(request: PendingJoin, now: number): string {
  const who = `#${request.id} ${request.name || request.nodeId || "(no name)"}`;
  if (request.state === JoinRequestState.PENDING) {
    return (
      `${new Date(now).toISOString()}  pending   ${who} from ${request.sourceAddress || "-"}` +
      `  key ${shortFingerprint(request.keyFingerprint)}  metadata ${metadataText(request.metadata)}` +
      `  expires in ${until(request.expiresAt, now)}\n`
    );
  }
  const by = request.decidedBy ? ` by ${request.decidedBy}` : "";
  const reason = request.reason ? `: ${request.reason}` : "";
  return `${new Date(now).toISOString()}  ${stateName(request).padEnd(8)}  ${who}${by}${reason}\n`;
}

async function answer(
  request: string,
  accept: boolean,
  options: { reason?: string },
  command: Command,
): Promise<void> {
  const globals = globalsOf(command);
  const connection = await globals.connect();
  const client = connection.client(JoinService);
  const response = await connection
    .call(client.answerJoinRequest({ request, accept, reason: options.reason ?? "" }))
    .catch(async (error: unknown) => {
      // By name the controller looks among pending requests only; say what became of a decided one.
      const text = request.trim();
      if (error instanceof CorralError && error.code === "NOT_FOUND" && !/^\d+$/.test(text)) {
        const listed = await client.listJoinRequests({ includeDecided: true }).catch(() => undefined);
        const decided = (listed?.requests ?? [])
          .filter((r) => (r.name === text || r.nodeId === text) && r.state !== JoinRequestState.PENDING)
          .sort((a, b) => (a.id < b.id ? 1 : -1))[0];
        if (decided !== undefined) {
          throw new CorralError(
            "FAILED_PRECONDITION",
            `join request ${decided.id} (${decided.name}) was already ${stateName(decided)}` +
              `${decided.decidedBy ? ` by ${decided.decidedBy}` : ""}`,
          );
        }
      }
      throw error;
    });
  const decided = response.request;
  if (globals.output === "json") {
    printJson(decided === undefined ? {} : toJson(PendingJoinSchema, decided, jsonOptions));
    return;
  }
  process.stdout.write(
    decided === undefined
      ? `${accept ? "accepted" : "rejected"} join request ${request}\n`
      : `${stateName(decided)} join request ${decided.id} (${decided.name}, from ${decided.sourceAddress || "-"}, ` +
          `key ${shortFingerprint(decided.keyFingerprint)})\n`,
  );
}

export function registerRequestsCommand(program: Command): void {
  const requests = program
    .command("requests")
    .alias("request")
    .description("nodes asking to join without a token: list, accept, reject, watch");

  requests
    .command("ls")
    .alias("list")
    .description("list pending join requests")
    .option("--all", "also requests decided or expired in the last few minutes", false)
    .action(async (options: { all: boolean }, command: Command) => {
      const globals = globalsOf(command);
      const connection = await globals.connect();
      const response = await connection.call(
        connection.client(JoinService).listJoinRequests({ includeDecided: options.all }),
      );
      if (globals.output === "json") {
        printJson(toJson(ListJoinRequestsResponseSchema, response, jsonOptions));
        return;
      }
      const now = Date.now();
      process.stdout.write(
        renderTable(
          ["id", "name", "source", "key fingerprint", "metadata", "age", "expires in", "state"],
          response.requests.map((r) => [
            String(r.id),
            r.name || "-",
            r.sourceAddress || "-",
            shortFingerprint(r.keyFingerprint),
            metadataText(r.metadata),
            ago(r.createdAt, now),
            expiresIn(r, now),
            stateName(r),
          ]),
        ),
      );
    });

  requests
    .command("accept <request>")
    .description("let a node in: the request's number, or the node's name")
    .option("--reason <text>", "why, for the audit log")
    .action((request: string, options: { reason?: string }, command: Command) =>
      answer(request, true, options, command),
    );

  requests
    .command("reject <request>")
    .description("turn a node away: the request's number, or the node's name")
    .option("--reason <text>", "why; the node is told")
    .action((request: string, options: { reason?: string }, command: Command) =>
      answer(request, false, options, command),
    );

  requests
    .command("watch")
    .description("print pending requests, then each new request and each decision, until Ctrl-C")
    .action(async (_options: unknown, command: Command) => {
      const globals = globalsOf(command);
      const connection = await globals.connect();
      const abort = new AbortController();
      let stopped = false;
      const stop = () => {
        stopped = true;
        abort.abort();
      };
      process.once("SIGINT", stop);
      process.once("SIGTERM", stop);
      try {
        if (globals.output === "table") {
          process.stderr.write(
            `watching join requests at ${connection.server} as ${connection.identity} (Ctrl-C stops)\n`,
          );
        }
        const stream = connection
          .client(JoinService)
          .watchJoinRequests({}, { signal: abort.signal, timeoutMs: 0 });
        for await (const event of stream) {
          const request = event.request;
          if (request === undefined) continue;
          if (globals.output === "json") {
            process.stdout.write(`${JSON.stringify(toJson(PendingJoinSchema, request, jsonOptions))}\n`);
          } else process.stdout.write(watchLine(request, Date.now()));
        }
        if (!stopped) {
          throw new CorralError("UNAVAILABLE", `the controller at ${connection.server} ended the watch`);
        }
      } catch (error) {
        // Ctrl-C is how a watch ends: not an error.
        if (stopped) return;
        throw error instanceof CorralError
          ? error
          : fromConnectError(error, connection.server, connection.tls);
      } finally {
        process.off("SIGINT", stop);
        process.off("SIGTERM", stop);
      }
    });
}
