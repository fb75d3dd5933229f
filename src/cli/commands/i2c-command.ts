import type { Command } from "commander";
import { HardwareService } from "../../gen/corral/v1/hardware_pb.ts";
import { globalsOf } from "../global-options.ts";
import { printJson } from "../output.ts";
import { bytesText, nodeOption, parseBytes, parseInteger } from "./devices-args.ts";

interface I2cOptions {
  node: string;
  bus: string;
  address: string;
  register?: string;
}

export function registerI2cCommand(program: Command): void {
  const i2c = program.command("i2c").description("I²C reads and writes on a node (/dev/i2c-N)");
  const target = (options: I2cOptions) => ({
    nodeId: options.node,
    bus: parseInteger(options.bus, "--bus"),
    address: parseInteger(options.address, "--address"),
  });
  i2c
    .command("read")
    .description("read bytes from a device, from a register with --register")
    .option(...nodeOption)
    .option("--bus <n>", "I²C bus", "1")
    .requiredOption("--address <addr>", "7-bit address, 0x03..0x77")
    .option("--register <reg>", "register to read from (0x00..0xff)")
    .option("--length <n>", "bytes to read (1..32)", "1")
    .action(async (options: I2cOptions & { length: string }, command: Command) => {
      const globals = globalsOf(command);
      const connection = await globals.connect();
      const hardware = connection.client(HardwareService);
      const length = parseInteger(options.length, "--length");
      const answer: { data: Uint8Array } = await connection.call<{ data: Uint8Array }>(
        options.register === undefined
          ? hardware.i2cRead({ ...target(options), length })
          : hardware.i2cReadRegister({
              ...target(options),
              register: parseInteger(options.register, "--register"),
              length,
            }),
      );
      if (globals.output === "json") return printJson({ data: Buffer.from(answer.data).toString("hex") });
      process.stdout.write(`${bytesText(answer.data)}\n`);
    });
  i2c
    .command("write <bytes...>")
    .description("write bytes to a device (to a register with --register)")
    .option(...nodeOption)
    .option("--bus <n>", "I²C bus", "1")
    .requiredOption("--address <addr>", "7-bit address, 0x03..0x77")
    .option("--register <reg>", "register to write from (0x00..0xff)")
    .action(async (args: string[], options: I2cOptions, command: Command) => {
      const globals = globalsOf(command);
      const connection = await globals.connect();
      const hardware = connection.client(HardwareService);
      const data = parseBytes(args, "BYTES");
      const answer = await connection.call<{ written: number }>(
        options.register === undefined
          ? hardware.i2cWrite({ ...target(options), data })
          : hardware.i2cWriteRegister({
              ...target(options),
              register: parseInteger(options.register, "--register"),
              data,
            }),
      );
      if (globals.output === "json") return printJson({ written: answer.written });
      process.stdout.write(`wrote ${answer.written} byte${answer.written === 1 ? "" : "s"}\n`);
    });
}
