import { toJson } from "@bufbuild/protobuf";
import type { Client } from "@connectrpc/connect";
import type { Command } from "commander";
import { parseDuration } from "../../base/duration.ts";
import { CorralError } from "../../base/errors.ts";
import {
  CommandResponseSchema,
  GPIOAction,
  GPIOResponseSchema,
  GPIOState,
  HealthStatusSchema,
  LogEntrySchema,
  NodeAgent,
  SystemMetricsSchema,
} from "../../gen/picontroller_pb.ts";
import { targetNodeHeader } from "../../wire/target-node.ts";
import { globalsOf } from "../global-options.ts";
import { printJson, renderFields } from "../output.ts";

type GpioRequest = Parameters<Client<typeof NodeAgent>["controlGPIO"]>[0];

interface NodeOption {
  node?: string;
}

/** Per-node calls go to the controller, which runs them on the named node's agent over mTLS. */
function nodeHeaders(options: NodeOption): { headers: Record<string, string> } {
  return { headers: options.node ? { [targetNodeHeader]: options.node } : {} };
}

const bytes = (n: bigint | number) => `${(Number(n) / 1024 ** 3).toFixed(1)} GiB`;

function parsePin(text: string): number {
  const pin = Number(text);
  if (!Number.isInteger(pin) || pin < 0)
    throw CorralError.invalidArgument("PIN", `"${text}" is not a pin number`);
  return pin;
}

function parseLevel(text: string): GPIOState {
  const level = text.toLowerCase();
  if (["high", "1", "on"].includes(level)) return GPIOState.HIGH;
  if (["low", "0", "off"].includes(level)) return GPIOState.LOW;
  throw CorralError.invalidArgument("LEVEL", `"${text}" is not high or low`);
}

export function registerNodeAgentCommands(program: Command): void {
  program
    .command("health")
    .description("a node's health checks (Pi-Controller HealthCheck)")
    .option("--node <node>", "node id or name (default: the controller's own node)")
    .action(async (options: NodeOption, command: Command) => {
      const globals = globalsOf(command);
      const connection = await globals.connect();
      const health = await connection.call(
        connection.client(NodeAgent).healthCheck({}, nodeHeaders(options)),
      );
      if (globals.output === "json") return printJson(toJson(HealthStatusSchema, health));
      process.stdout.write(
        renderFields([
          ["status", health.status],
          ["node", health.nodeId],
          ["version", health.version],
          ["uptime", `${health.uptimeSeconds}s`],
          ["gpio", health.gpioBackend],
          [
            "checks",
            health.checks.map((c) => [c.name, `${c.status}${c.message ? ` — ${c.message}` : ""}`] as const),
          ],
        ]),
      );
      if (health.status !== "OK") process.exitCode = 1;
    });

  program
    .command("metrics")
    .description("a node's live system metrics (Pi-Controller GetSystemMetrics)")
    .option("--node <node>", "node id or name (default: the controller's own node)")
    .action(async (options: NodeOption, command: Command) => {
      const globals = globalsOf(command);
      const connection = await globals.connect();
      const m = await connection.call(
        connection.client(NodeAgent).getSystemMetrics({}, nodeHeaders(options)),
      );
      if (globals.output === "json") return printJson(toJson(SystemMetricsSchema, m));
      process.stdout.write(
        renderFields([
          ["host", m.hostname],
          ["cpu", `${m.cpuUsage.toFixed(1)}% of ${m.cpuCount} cpus`],
          [
            "memory",
            `${bytes(m.memoryUsedBytes)} / ${bytes(m.memoryTotalBytes)} (${m.memoryUsage.toFixed(1)}%)`,
          ],
          ["swap", `${bytes(m.swapUsedBytes)} / ${bytes(m.swapTotalBytes)}`],
          ["load", `${m.load?.load1.toFixed(2)} ${m.load?.load5.toFixed(2)} ${m.load?.load15.toFixed(2)}`],
          ["uptime", `${m.uptimeSeconds}s`],
          [
            "temperature",
            m.temperatureCelsius === undefined ? "no sensor" : `${m.temperatureCelsius.toFixed(1)} °C`,
          ],
          ["disks", m.disks.map((d) => [d.mount, `${bytes(d.usedBytes)} / ${bytes(d.totalBytes)}`] as const)],
          ["network", m.network.map((n) => [n.name, `rx ${n.rxBytes} B, tx ${n.txBytes} B`] as const)],
        ]),
      );
    });

  const gpio = program.command("gpio").description("drive and read a node's GPIO pins");
  const gpioCall = async (command: Command, options: NodeOption, request: GpioRequest) => {
    const globals = globalsOf(command);
    const connection = await globals.connect();
    const response = await connection.call(
      connection.client(NodeAgent).controlGPIO(request, nodeHeaders(options)),
    );
    if (globals.output === "json") return printJson(toJson(GPIOResponseSchema, response));
    process.stdout.write(
      `pin ${response.pin} is ${GPIOState[response.state]} (${response.backend})${response.message ? ` — ${response.message}` : ""}\n`,
    );
  };
  gpio
    .command("set <pin> <level>")
    .description("drive a pin high or low")
    .option("--node <node>", "node id or name")
    .action((pin: string, level: string, options: NodeOption, command: Command) =>
      gpioCall(command, options, { pin: parsePin(pin), state: parseLevel(level), action: GPIOAction.WRITE }),
    );
  gpio
    .command("get <pin>")
    .description("read a pin")
    .option("--node <node>", "node id or name")
    .action((pin: string, options: NodeOption, command: Command) =>
      gpioCall(command, options, { pin: parsePin(pin), action: GPIOAction.READ }),
    );
  gpio
    .command("pulse <pin> <level>")
    .description("drive a pin to a level for a while, then back")
    .option("--node <node>", "node id or name")
    .option("--ms <ms>", "how long", "100")
    .action((pin: string, level: string, options: NodeOption & { ms: string }, command: Command) =>
      gpioCall(command, options, {
        pin: parsePin(pin),
        state: parseLevel(level),
        action: GPIOAction.PULSE,
        pulseMs: Number(options.ms),
      }),
    );

  program
    .command("exec <command> [args...]")
    .description(
      "run an allow-listed diagnostic command on a node (argv, never a shell): corral exec --node X -- df -h",
    )
    .option("--node <node>", "node id or name")
    .option("--timeout <duration>", "give up after this long", "30s")
    .action(
      async (name: string, args: string[], options: NodeOption & { timeout: string }, command: Command) => {
        const globals = globalsOf(command);
        const timeoutSeconds = Math.ceil(parseDuration(options.timeout, "--timeout") / 1000);
        const connection = await globals.connect(timeoutSeconds * 1000 + 10_000);
        const result = await connection.call(
          connection
            .client(NodeAgent)
            .executeCommand({ command: name, args, timeoutSeconds }, nodeHeaders(options)),
        );
        if (globals.output === "json") return printJson(toJson(CommandResponseSchema, result));
        process.stdout.write(result.stdout);
        process.stderr.write(result.stderr);
        if (result.truncated) process.stderr.write("corral: output was cut at the node's limit\n");
        if (result.timedOut) process.stderr.write("corral: the command ran out of time and was killed\n");
        process.exitCode = result.exitCode;
      },
    );

  program
    .command("logs")
    .description("a node's logs: the agent's own, the journal, an allowed file, a pipeline run")
    .option("--node <node>", "node id or name")
    .option("--source <source>", "agent, journal, file:<path>, pipeline:<run id>", "agent")
    .option("--level <level>", "at least this level: debug, info, warn, error")
    .option("--grep <text>", "only lines containing the text")
    .option("--since <duration>", "only lines newer than this (e.g. 10m)")
    .option("-n, --tail <n>", "the last n lines first", "50")
    .option("-f, --follow", "keep streaming new lines until Ctrl-C", false)
    .action(
      async (
        options: NodeOption & {
          source: string;
          level?: string;
          grep?: string;
          since?: string;
          tail: string;
          follow: boolean;
        },
        command: Command,
      ) => {
        const globals = globalsOf(command);
        const connection = await globals.connect(options.follow ? 0 : 30_000);
        const stop = new AbortController();
        const onSignal = () => stop.abort();
        process.once("SIGINT", onSignal);
        try {
          const stream = connection.client(NodeAgent).streamLogs(
            {
              source: options.source,
              level: options.level ?? "",
              contains: options.grep ?? "",
              since:
                options.since === undefined
                  ? 0n
                  : BigInt(Date.now() - parseDuration(options.since, "--since")),
              tail: Number(options.tail),
              follow: options.follow,
            },
            { ...nodeHeaders(options), signal: stop.signal },
          );
          await connection
            .call(
              (async () => {
                for await (const entry of stream) {
                  if (globals.output === "json")
                    process.stdout.write(`${JSON.stringify(toJson(LogEntrySchema, entry))}\n`);
                  else
                    process.stdout.write(
                      `${new Date(Number(entry.timestamp)).toISOString()} ${entry.level.toUpperCase().padEnd(5)} ${entry.message}\n`,
                    );
                }
              })(),
            )
            .catch((error: unknown) => {
              if (!stop.signal.aborted) throw error;
            });
        } finally {
          process.off("SIGINT", onSignal);
        }
      },
    );
}
