import { Command, CommanderError, Option } from "commander";
import { CorralError } from "../core/errors.ts";
import { corralVersion } from "../version.ts";
import { registerControllerCommand } from "./commands/controller-command.ts";
import { registerDemoCommand } from "./commands/demo-command.ts";
import { registerNodesCommand } from "./commands/nodes-command.ts";
import { registerStatusCommand } from "./commands/status-command.ts";
import { exitCode, exitCodeFor } from "./exit-codes.ts";

const program = new Command("corral")
  .description("corral: a fleet control plane — controller, agents, and the tools to run them")
  .version(corralVersion)
  .addOption(new Option("--server <host:port>", "the controller's loopback gRPC bridge").env("CORRAL_SERVER"))
  .addOption(new Option("-o, --output <format>", "table or json").choices(["table", "json"]).default("table"))
  .exitOverride()
  .showHelpAfterError();

registerDemoCommand(program);
registerControllerCommand(program);
registerStatusCommand(program);
registerNodesCommand(program);

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
