import type { Command } from "commander";
import { HardwareService } from "../../gen/corral/v1/hardware_pb.ts";
import { globalsOf } from "../global-options.ts";
import { printJson } from "../output.ts";
import { bytesText, nodeOption, parseBytes, parseInteger } from "./devices-args.ts";

export function registerSpiCommand(program: Command): void {
  const spi = program.command("spi").description("SPI transfers on a node (/dev/spidevB.C)");
  spi
    .command("transfer <bytes...>")
    .description("send bytes (0x9f 0 0, or 9f0000) and print the bytes read back at the same time")
    .option(...nodeOption)
    .option("--bus <n>", "SPI bus", "0")
    .option("--cs <n>", "chip select", "0")
    .option("--speed <hz>", "clock in Hz (default 1 MHz)", "0")
    .option("--mode <n>", "SPI mode 0..3", "0")
    .action(
      async (
        args: string[],
        options: { node: string; bus: string; cs: string; speed: string; mode: string },
        command: Command,
      ) => {
        const globals = globalsOf(command);
        const connection = await globals.connect();
        const answer = await connection.call(
          connection.client(HardwareService).spiTransfer({
            nodeId: options.node,
            bus: parseInteger(options.bus, "--bus"),
            chipSelect: parseInteger(options.cs, "--cs"),
            data: parseBytes(args, "BYTES"),
            speedHz: parseInteger(options.speed, "--speed"),
            mode: parseInteger(options.mode, "--mode"),
          }),
        );
        if (globals.output === "json") return printJson({ data: Buffer.from(answer.data).toString("hex") });
        process.stdout.write(`${bytesText(answer.data)}\n`);
      },
    );
}
