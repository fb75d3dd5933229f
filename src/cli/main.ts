import { Command, CommanderError, Option } from "commander";
import { CorralError } from "../base/errors.ts";
import { corralVersion } from "../version.ts";
import { registerCertsCommand } from "./commands/certs-command.ts";
import { registerClusterCommand } from "./commands/cluster-command.ts";
import { registerControllerCommand } from "./commands/controller-command.ts";
import { registerDemoCommand } from "./commands/demo-command.ts";
import { registerDevicesCommand } from "./commands/devices-command.ts";
import { registerGpioCommands } from "./commands/gpio-command.ts";
import { registerI2cCommand } from "./commands/i2c-command.ts";
import { registerMembersCommand } from "./commands/members-command.ts";
import { registerModelsCommand } from "./commands/models-command.ts";
import { registerNodeAgentCommands } from "./commands/node-agent-commands.ts";
import { registerNodesCommand } from "./commands/nodes-command.ts";
import { registerPipelinesCommand } from "./commands/pipelines-command.ts";
import { registerProvisionCommand } from "./commands/provision-command.ts";
import { registerRequestsCommand } from "./commands/requests-command.ts";
import { registerServiceCommand } from "./commands/service-command.ts";
import { registerSpiCommand } from "./commands/spi-command.ts";
import { registerStatusCommand } from "./commands/status-command.ts";
import { registerTokenCommand } from "./commands/token-command.ts";
import { registerTuiCommand } from "./commands/tui-command.ts";
import { registerUpCommand } from "./commands/up-command.ts";
import { exitCode, exitCodeFor } from "./exit-codes.ts";

const program = new Command("corral")
  .description("corral: a fleet control plane — controller, agents, and the tools to run them")
  .version(corralVersion)
  .addOption(
    new Option(
      "--server <host:port>",
      "the controller: its loopback bridge (default 127.0.0.1:8080), or its cluster listener with " +
        "--credentials, --token or --ca (default 127.0.0.1:7443); several controllers: a,b,c (tried in order)",
    ).env("CORRAL_SERVER"),
  )
  .addOption(
    new Option(
      "--credentials <dir>",
      "client.crt, client.key and ca.crt (the controller writes the first admin's to <data dir>/admin): mutual TLS",
    ).env("CORRAL_CREDENTIALS"),
  )
  .addOption(
    new Option("--token <token>", "an operator access token (corral token create --role operator)").env(
      "CORRAL_TOKEN",
    ),
  )
  .addOption(
    new Option("--ca <file>", "the controller's CA certificate, to check the cluster listener").env(
      "CORRAL_CA",
    ),
  )
  .addOption(new Option("-o, --output <format>", "table or json").choices(["table", "json"]).default("table"))
  .exitOverride()
  .showHelpAfterError();

registerDemoCommand(program);
registerControllerCommand(program);
registerUpCommand(program);
registerServiceCommand(program);
registerStatusCommand(program);
registerNodesCommand(program);
registerMembersCommand(program);
registerModelsCommand(program);
registerNodeAgentCommands(program);
// After the node agent's commands: `corral gpio` gains config, watch, pwm and pins.
registerGpioCommands(program);
registerSpiCommand(program);
registerI2cCommand(program);
registerDevicesCommand(program);
registerRequestsCommand(program);
registerTokenCommand(program);
registerCertsCommand(program);
registerProvisionCommand(program);
registerClusterCommand(program);
registerPipelinesCommand(program);
registerTuiCommand(program);

/**
 * The subcommand named on the command line, skipping the program's own options and their values.
 * Commander recognises program options after a subcommand too, so `corral up --token <join token>` would
 * hand the agent's token to the global `--token` (an operator token). A subcommand that declares an
 * option of the same name as a global one owns it: for it, global options count only before its name.
 */
function subcommandIn(argv: readonly string[]): Command | undefined {
  const takesValue = new Set(
    program.options.filter((o) => o.required || o.optional).flatMap((o) => [o.long, o.short]),
  );
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i] ?? "";
    if (arg === "--") return undefined;
    if (takesValue.has(arg)) i++;
    else if (!arg.startsWith("-"))
      return program.commands.find((c) => c.name() === arg || c.aliases().includes(arg));
  }
  return undefined;
}

const globalFlags = new Set(program.options.map((o) => o.long));
if (subcommandIn(process.argv.slice(2))?.options.some((o) => globalFlags.has(o.long))) {
  program.enablePositionalOptions();
}

try {
  await program.parseAsync(process.argv);
} catch (error) {
  if (error instanceof CommanderError) {
    process.exitCode = error.exitCode === 0 ? exitCode.ok : exitCode.usage;
  } else {
    const message =
      error instanceof CorralError ? `${error.code}: ${error.message}` : (error as Error).message;
    process.stderr.write(`corral: ${message}\n`);
    process.exitCode = exitCodeFor(error);
  }
}
