import type { Command } from "commander";

export interface CommandModule {
  /** The top-level command names (and aliases) the module registers. */
  readonly names: readonly string[];
  readonly load: () => Promise<(program: Command) => void>;
}

/**
 * Every command module of the CLI, loaded only when its command is named: `corral up` loads the agent
 * and not the controller, the dashboard's API or the TUI, and `corral --version` loads none of them
 * (start-up time and an agent's memory on a small node). The order is the registration order (`gpio`'s
 * Pi-Controller verbs before corral's). test/cli/command-table.test.ts checks the names against what the
 * modules register.
 */
export const commandModules: readonly CommandModule[] = [
  { names: ["demo"], load: async () => (await import("./commands/demo-command.ts")).registerDemoCommand },
  {
    names: ["controller"],
    load: async () => (await import("./commands/controller-command.ts")).registerControllerCommand,
  },
  { names: ["up", "agent"], load: async () => (await import("./commands/up-command.ts")).registerUpCommand },
  {
    names: ["service"],
    load: async () => (await import("./commands/service-command.ts")).registerServiceCommand,
  },
  {
    names: ["status"],
    load: async () => (await import("./commands/status-command.ts")).registerStatusCommand,
  },
  { names: ["nodes"], load: async () => (await import("./commands/nodes-command.ts")).registerNodesCommand },
  {
    names: ["members", "owner", "keys", "drain"],
    load: async () => (await import("./commands/members-command.ts")).registerMembersCommand,
  },
  {
    names: ["models", "model"],
    load: async () => (await import("./commands/models-command.ts")).registerModelsCommand,
  },
  {
    names: ["health", "metrics", "gpio", "exec", "logs"],
    load: async () => (await import("./commands/node-agent-commands.ts")).registerNodeAgentCommands,
  },
  { names: ["gpio"], load: async () => (await import("./commands/gpio-command.ts")).registerGpioCommands },
  { names: ["spi"], load: async () => (await import("./commands/spi-command.ts")).registerSpiCommand },
  { names: ["i2c"], load: async () => (await import("./commands/i2c-command.ts")).registerI2cCommand },
  {
    names: ["devices", "device"],
    load: async () => (await import("./commands/devices-command.ts")).registerDevicesCommand,
  },
  {
    names: ["requests", "request"],
    load: async () => (await import("./commands/requests-command.ts")).registerRequestsCommand,
  },
  {
    names: ["token", "tokens"],
    load: async () => (await import("./commands/token-command.ts")).registerTokenCommand,
  },
  {
    names: ["certs", "certificates"],
    load: async () => (await import("./commands/certs-command.ts")).registerCertsCommand,
  },
  {
    names: ["provision"],
    load: async () => (await import("./commands/provision-command.ts")).registerProvisionCommand,
  },
  {
    names: ["cluster", "clusters"],
    load: async () => (await import("./commands/cluster-command.ts")).registerClusterCommand,
  },
  {
    names: ["pipelines"],
    load: async () => (await import("./commands/pipelines-command.ts")).registerPipelinesCommand,
  },
  { names: ["tui"], load: async () => (await import("./commands/tui-command.ts")).registerTuiCommand },
];

/**
 * The modules to load for a command line: those of the command named (the first word that is not a
 * global option or its value), none for a bare `--version`, every one otherwise (help lists them all;
 * an unknown word gets commander's suggestions).
 */
export function modulesFor(
  argv: readonly string[],
  globalOptionsWithValue: ReadonlySet<string>,
): CommandModule[] {
  let word: string | undefined;
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i] ?? "";
    if (arg === "--") break;
    if (globalOptionsWithValue.has(arg)) i++;
    else if (!arg.startsWith("-")) {
      word = arg;
      break;
    }
  }
  if (word !== undefined) {
    const named = commandModules.filter((m) => m.names.includes(word));
    return named.length > 0 ? named : [...commandModules];
  }
  const asksHelp = argv.includes("-h") || argv.includes("--help");
  if (!asksHelp && (argv.includes("-V") || argv.includes("--version"))) return [];
  return [...commandModules];
}
