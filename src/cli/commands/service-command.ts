import { execFile } from "node:child_process";
import { readFileSync, realpathSync } from "node:fs";
import { mkdir, rm, stat, writeFile } from "node:fs/promises";
import { join, resolve } from "node:path";
import { promisify } from "node:util";
import type { Command } from "commander";
import { CorralError } from "../../base/errors.ts";
import { corralVersion } from "../../version.ts";
import { deviceGroups, renderUnit, type ServiceRole, serviceRoles, unitName } from "../systemd-unit.ts";

const run = promisify(execFile);
const defaultUnitDir = "/etc/systemd/system";

interface InstallOptions {
  config?: string;
  dataDir?: string;
  unitDir: string;
  print: boolean;
  dryRun: boolean;
  start: boolean;
}

function roleOf(text: string): ServiceRole {
  if ((serviceRoles as readonly string[]).includes(text)) return text as ServiceRole;
  throw CorralError.invalidArgument("role", `"${text}" is not controller or agent`);
}

/** The corral being run now, as systemd should start it: node, and bin/corral.js with links resolved. */
function corralExec(): string[] {
  const script = process.argv[1];
  if (script === undefined)
    throw new CorralError("FAILED_PRECONDITION", "cannot tell where corral is installed");
  return [process.execPath, realpathSync(script)];
}

/** Groups of /etc/group among gpio, spi, i2c: a missing one named in SupplementaryGroups fails the unit. */
function existingDeviceGroups(): string[] {
  let text = "";
  try {
    text = readFileSync("/etc/group", "utf8");
  } catch {
    return [];
  }
  const names = new Set(text.split("\n").map((line) => line.slice(0, line.indexOf(":"))));
  return deviceGroups.filter((group) => names.has(group));
}

async function systemctl(args: string[]): Promise<void> {
  try {
    await run("systemctl", args, { timeout: 60_000 });
  } catch (error) {
    const detail = (error as { stderr?: string }).stderr?.trim() || (error as Error).message;
    throw new CorralError("FAILED_PRECONDITION", `systemctl ${args.join(" ")} failed: ${detail}`, {
      cause: error,
    });
  }
}

export function registerServiceCommand(program: Command): void {
  const service = program
    .command("service")
    .description("run the controller or the agent as a systemd service (install, uninstall)");

  service
    .command("install <role> [flags...]")
    .description(
      "write corral-<role>.service (role: controller or agent), then daemon-reload and enable --now; " +
        "flags after -- go to `corral controller` / `corral up`",
    )
    .option("-c, --config <file>", "the controller's or the agent's YAML (made absolute)")
    .option("--data-dir <dir>", "the data dir the unit passes (default /var/lib/corral/<role>)")
    .option("--unit-dir <dir>", "where to write the unit", defaultUnitDir)
    .option("--print", "print the unit and change nothing", false)
    .option("--dry-run", "the same as --print", false)
    .option("--no-start", "write the unit only: no systemctl daemon-reload, enable --now")
    .action(async (roleText: string, flags: string[], options: InstallOptions) => {
      const role = roleOf(roleText);
      let config: string | undefined;
      if (options.config !== undefined) {
        config = resolve(options.config);
        const info = await stat(config).catch(() => undefined);
        if (info?.isFile() !== true)
          throw CorralError.invalidArgument("--config", `${config} is not a file (write the YAML first)`);
      }
      const unit = renderUnit({
        role,
        exec: corralExec(),
        ...(config === undefined ? {} : { config }),
        ...(options.dataDir === undefined ? {} : { dataDir: resolve(options.dataDir) }),
        extraArgs: flags,
        groups: existingDeviceGroups(),
        generatedBy: `corral service install (corral ${corralVersion})`,
      });
      if (options.print || options.dryRun) {
        process.stdout.write(unit);
        return;
      }
      const file = join(resolve(options.unitDir), unitName(role));
      await mkdir(resolve(options.unitDir), { recursive: true });
      await writeFile(file, unit, { mode: 0o644 });
      process.stdout.write(`wrote ${file}\n`);
      if (!options.start) return;
      await systemctl(["daemon-reload"]);
      await systemctl(["enable", "--now", unitName(role)]);
      process.stdout.write(`started ${unitName(role)} (journalctl -u ${unitName(role)} -f)\n`);
    });

  service
    .command("uninstall <role>")
    .description("stop and disable corral-<role>.service and remove its unit (data dir and config stay)")
    .option("--unit-dir <dir>", "where the unit is", defaultUnitDir)
    .option("--no-stop", "only remove the file: no systemctl disable --now, daemon-reload")
    .action(async (roleText: string, options: { unitDir: string; stop: boolean }) => {
      const role = roleOf(roleText);
      const file = join(resolve(options.unitDir), unitName(role));
      const present = await stat(file).then(
        () => true,
        () => false,
      );
      if (!present) throw new CorralError("NOT_FOUND", `${file} does not exist: nothing to uninstall`);
      if (options.stop) await systemctl(["disable", "--now", unitName(role)]);
      await rm(file);
      if (options.stop) await systemctl(["daemon-reload"]);
      process.stdout.write(`removed ${file}\n`);
    });
}
