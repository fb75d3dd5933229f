import { setTimeout as sleep } from "node:timers/promises";
import type { Command } from "commander";
import { Backoff } from "../../base/backoff.ts";
import { parseDuration } from "../../base/duration.ts";
import { CorralError } from "../../base/errors.ts";
import { defaults } from "../../defaults.ts";
import { createLogger } from "../../observability/logger.ts";
import { type AgentFlags, type AgentSettings, readAgentFile, resolveAgentSettings } from "../agent-config.ts";
import { closeOnSignals } from "../shutdown.ts";

/** What commander hands over: only flags a person typed are set (defaults come from the file or src/defaults.ts). */
interface UpFlags {
  config?: string;
  grpc?: string;
  listen?: string;
  advertise?: string;
  dataDir?: string;
  join?: string;
  token?: string;
  caFingerprint?: string;
  name?: string;
  label?: string[];
  pipelineAllow?: string[];
  insecure?: boolean;
  logLevel?: string;
  runAs?: string;
  provisionAs?: string;
  rootSteps?: boolean;
}

function parseLabel(value: string, previous: string[] | undefined): string[] {
  if (!/^[^=]+=.*$/.test(value))
    throw new CorralError("INVALID_ARGUMENT", `--label must be key=value, not "${value}"`);
  return [...(previous ?? []), value];
}

/** The flags typed on the command line, in the file's terms. */
function typedFlags(flags: UpFlags, command: Command): AgentFlags {
  const typed = (key: keyof UpFlags) => command.getOptionValueSource(key) === "cli";
  const out: Record<string, unknown> = {};
  for (const key of [
    "grpc",
    "listen",
    "advertise",
    "dataDir",
    "join",
    "token",
    "caFingerprint",
    "name",
    "pipelineAllow",
    "insecure",
    "logLevel",
    "runAs",
    "provisionAs",
    "rootSteps",
  ] as const) {
    if (typed(key) && flags[key] !== undefined) out[key] = flags[key];
  }
  if (flags.label !== undefined)
    out.labels = Object.fromEntries(
      flags.label.map((l) => [l.slice(0, l.indexOf("=")), l.slice(l.indexOf("=") + 1)]),
    );
  return out as AgentFlags;
}

export function registerUpCommand(program: Command): void {
  program
    .command("up")
    .alias("agent")
    .description("run the agent on this node: join a controller and serve the node's APIs")
    .option(
      "--grpc <host:port>",
      `the local API (NanoPing's --grpc), plaintext, loopback only (default ${defaults.agent.localApiAddress})`,
    )
    .option("-c, --config <file>", "agent YAML: every flag has a key (camelCase, labels as a map); flags win")
    .option(
      "--listen <host:port>",
      `the mTLS listener the controller calls (default ${defaults.agent.listenAddress})`,
    )
    .option(
      "--advertise <host>",
      "the host the controller should dial (default: the listen host or this machine's address)",
    )
    .option("--data-dir <dir>", `identity and credentials of this node (default ${defaults.agent.dataDir})`)
    .option(
      "--join <controllers>",
      "the controllers' cluster addresses (http.address), comma-separated, e.g. 10.0.0.1:7443,10.0.0.2:7443",
    )
    .option("--token <token>", "a join token (corral token create); without one the node asks an operator")
    .option("--ca-fingerprint <sha256:…>", "pin the controller's CA (a token carries it already)")
    .option("--name <name>", "the node's name (default: the host name)")
    .option(
      "--label <key=value>",
      "a label for this node (repeatable; merged over the file's labels)",
      parseLabel,
    )
    .option(
      "--pipeline-allow <program>",
      "a program (absolute path) pipeline process blocks may run on this node (repeatable; default none)",
      (value: string, previous: string[] | undefined) => [...(previous ?? []), value],
    )
    .option("--insecure", "allow the plaintext local API on a non-loopback address")
    .option("--log-level <level>", "trace, debug, info, warn, error (default info)")
    .option(
      "--run-as <user>",
      `who pipeline process blocks and provisioning exec steps run as: a user, a uid, root, or auto (${defaults.agent.runAsWhenRoot} when the agent is root, else the agent's user; default ${defaults.agent.runAs})`,
    )
    .option(
      "--provision-as <user>",
      "who provisioning exec steps run as, if not --run-as (steps with root: true in their plan run as root)",
    )
    .option("--no-root-steps", "refuse provisioning exec steps whose plan asks for root (root: true)")
    .action(async (flags: UpFlags, command: Command) => {
      const file = flags.config === undefined ? undefined : await readAgentFile(flags.config);
      const options = resolveAgentSettings(typedFlags(flags, command), file?.file, file?.baseDir);
      const { Agent } = await import("../../agent/agent.ts");
      const { AgentLogRing } = await import("../../host/logs/ring-log-source.ts");
      const logRing = new AgentLogRing();
      const logger = createLogger({ level: options.logLevel, name: "agent", tee: logRing.ingest });
      const agent = await Agent.start(
        {
          localApiAddress: options.grpc,
          listenAddress: options.listen,
          dataDir: options.dataDir,
          insecure: options.insecure,
          pipelineProcessAllow: [...options.pipelineAllow],
          logRing,
          runAs: options.runAs,
          rootSteps: options.rootSteps,
          ...(options.provisionAs === undefined ? {} : { provisionAs: options.provisionAs }),
          labels: options.labels,
          ...(options.advertise === undefined ? {} : { advertiseHost: options.advertise }),
          ...(options.join === undefined ? {} : { join: options.join }),
          ...(options.token === undefined ? {} : { token: options.token }),
          ...(options.caFingerprint === undefined ? {} : { caFingerprint: options.caFingerprint }),
          ...(options.name === undefined ? {} : { name: options.name }),
        },
        logger,
      );
      process.stdout.write(
        `corral agent "${agent.identity.name}" (${agent.identity.nodeId})\n` +
          `  local API (gRPC, h2c)  ${agent.localApiAddress}\n` +
          `  cluster listener       ${agent.listenAddress}\n` +
          `  state                  ${agent.link.state.value}\n`,
      );
      const stop = new AbortController();
      const joining = joinWithRetry(agent, options, stop.signal, logger);
      await Promise.race([
        closeOnSignals(async () => {
          stop.abort();
          await agent.close();
        }, logger),
        joining.then(
          () => new Promise<never>(() => undefined),
          async (error: unknown) => {
            stop.abort();
            await agent.close();
            throw error;
          },
        ),
      ]);
    });
}

/** Joins when asked; while the controller is unreachable, keeps trying with backoff. */
async function joinWithRetry(
  agent: {
    joinIfAsked(join: string | undefined, token: string | undefined, signal: AbortSignal): Promise<void>;
  },
  options: AgentSettings,
  signal: AbortSignal,
  logger: ReturnType<typeof createLogger>,
): Promise<void> {
  const backoff = new Backoff(
    parseDuration(defaults.agent.initialBackoff),
    parseDuration(defaults.agent.maxBackoff),
  );
  while (!signal.aborted) {
    try {
      await agent.joinIfAsked(options.join, options.token, signal);
      return;
    } catch (error) {
      if (signal.aborted) return;
      if (!(error instanceof CorralError) || error.code !== "UNAVAILABLE") throw error;
      const delay = backoff.next();
      logger.warn({ err: error.message, retryInMs: delay }, "cannot reach the controller yet");
      await sleep(delay, undefined, { signal }).catch(() => undefined);
    }
  }
}
