import { toJson } from "@bufbuild/protobuf";
import type { Command } from "commander";
import { CorralError } from "../../base/errors.ts";
import { enumText, isoTime } from "../../client/format.ts";
import {
  type Device,
  DeviceKind,
  DeviceSchema,
  DevicesService,
  type Reading,
  ReadingSchema,
} from "../../gen/corral/v1/devices_pb.ts";
import { HardwareBackendSchema, HardwareService } from "../../gen/corral/v1/hardware_pb.ts";
import { globalsOf } from "../global-options.ts";
import { printJson, renderTable } from "../output.ts";
import { bytesText, parseBytes, parseInteger, parseNumber } from "./devices-args.ts";
import { pwmLine } from "./gpio-command.ts";

function parseKind(text: string): DeviceKind {
  const kind = {
    digital: DeviceKind.DIGITAL,
    analog: DeviceKind.ANALOG,
    pwm: DeviceKind.PWM,
    spi: DeviceKind.SPI,
    i2c: DeviceKind.I2C,
  }[text.toLowerCase()];
  if (kind === undefined)
    throw CorralError.invalidArgument("--kind", `"${text}": use digital, analog, pwm, spi or i2c`);
  return kind;
}

function collect(value: string, previous: string[]): string[] {
  return [...previous, value];
}

/** Where a device is, in words: "pin 18", "i2c-1 0x48 reg 0x00", "spidev0.0", "sim-adc0 channel 2". */
export function deviceWhere(device: Device): string {
  const hex = (n: number) => `0x${n.toString(16).padStart(2, "0")}`;
  switch (device.kind) {
    case DeviceKind.DIGITAL:
    case DeviceKind.PWM:
      return `${device.chip ? `${device.chip} ` : ""}pin ${device.pin}`;
    case DeviceKind.I2C:
      return `i2c-${device.bus} ${hex(device.address)} reg ${hex(device.register)} ×${device.length}`;
    case DeviceKind.SPI:
      return `spidev${device.bus}.${device.chipSelect} ×${device.length}`;
    case DeviceKind.ANALOG:
      return `${device.iioDevice || "adc"} channel ${device.register}`;
    default:
      return "-";
  }
}

function readingText(reading: Reading): string {
  const value = Number.isInteger(reading.value) ? String(reading.value) : reading.value.toFixed(3);
  const raw = reading.raw.length > 0 ? `  raw ${bytesText(reading.raw)}` : "";
  return `${isoTime(reading.time)}  ${reading.device}  ${value}${reading.unit ? ` ${reading.unit}` : ""}${raw}`;
}

export function registerDevicesCommand(program: Command): void {
  const devices = program
    .command("devices")
    .alias("device")
    .description("named devices on nodes (digital, analog, PWM, SPI, I²C): read, write and watch by name");

  devices
    .command("ls")
    .description("every device")
    .option("--node <node>", "only this node's (id or name)", "")
    .action(async (options: { node: string }, command: Command) => {
      const globals = globalsOf(command);
      const connection = await globals.connect();
      const answer = await connection.call(
        connection.client(DevicesService).listDevices({ nodeId: options.node }),
      );
      if (globals.output === "json") return printJson(answer.devices.map((d) => toJson(DeviceSchema, d)));
      process.stdout.write(
        renderTable(
          ["name", "node", "kind", "where", "unit", "description"],
          answer.devices.map((d) => [
            d.name,
            d.nodeName || d.nodeId,
            enumText(DeviceKind, d.kind),
            deviceWhere(d),
            d.config.unit ?? "-",
            d.config.description ?? "",
          ]),
        ),
      );
    });

  devices
    .command("add <name>")
    .description("register a device: corral devices add led --node pi-1 --kind digital --pin 18")
    .option("--node <node>", "the node it is attached to (default: the controller's own)", "")
    .requiredOption("--kind <kind>", "digital, analog, pwm, spi or i2c", parseKind)
    .option("--chip <chip>", "digital/pwm: GPIO chip (default: the node's first)", "")
    .option("--pin <n>", "digital/pwm: the line", "0")
    .option("--bus <n>", "spi/i2c: the bus", "0")
    .option("--address <addr>", "i2c: 7-bit address (0x03..0x77)", "0")
    .option("--register <reg>", "i2c: the register", "0")
    .option("--channel <n>", "analog: the ADC channel", "0")
    .option("--iio-device <name>", "analog: the IIO device (default: the node's first)", "")
    .option("--cs <n>", "spi: chip select", "0")
    .option("--length <n>", "spi/i2c: bytes read (default: i2c 1, spi 2)", "0")
    .option("--unit <unit>", "unit of its value (°C, mV, …)")
    .option("--description <text>", "what it is")
    .option(
      "--set <key=value>",
      "a config entry (repeatable): pwm_frequency_hz, spi_speed_hz, spi_mode, spi_read",
      collect,
      [],
    )
    .action(
      async (
        name: string,
        options: {
          node: string;
          kind: DeviceKind;
          chip: string;
          pin: string;
          bus: string;
          address: string;
          register: string;
          channel: string;
          iioDevice: string;
          cs: string;
          length: string;
          unit?: string;
          description?: string;
          set: string[];
        },
        command: Command,
      ) => {
        const config: Record<string, string> = {};
        for (const entry of options.set) {
          const at = entry.indexOf("=");
          if (at < 1) throw CorralError.invalidArgument("--set", `"${entry}" is not key=value`);
          config[entry.slice(0, at)] = entry.slice(at + 1);
        }
        if (options.unit !== undefined) config.unit = options.unit;
        if (options.description !== undefined) config.description = options.description;
        const globals = globalsOf(command);
        const connection = await globals.connect();
        const answer = await connection.call(
          connection.client(DevicesService).addDevice({
            device: {
              name,
              nodeId: options.node,
              kind: options.kind,
              chip: options.chip,
              pin: parseInteger(options.pin, "--pin"),
              bus: parseInteger(options.bus, "--bus"),
              address: parseInteger(options.address, "--address"),
              register:
                options.kind === DeviceKind.ANALOG
                  ? parseInteger(options.channel, "--channel")
                  : parseInteger(options.register, "--register"),
              iioDevice: options.iioDevice,
              chipSelect: parseInteger(options.cs, "--cs"),
              length: parseInteger(options.length, "--length"),
              config,
            },
          }),
        );
        const device = answer.device;
        if (device === undefined) throw new Error("the controller answered without the device");
        if (globals.output === "json") return printJson(toJson(DeviceSchema, device));
        process.stdout.write(
          `device ${device.name} added: ${enumText(DeviceKind, device.kind)} on ${device.nodeName || device.nodeId}, ${deviceWhere(device)}\n`,
        );
      },
    );

  devices
    .command("rm <name>")
    .alias("remove")
    .description("forget a device (its hardware is left as it is)")
    .action(async (name: string, _options: unknown, command: Command) => {
      const globals = globalsOf(command);
      const connection = await globals.connect();
      await connection.call(connection.client(DevicesService).removeDevice({ name }));
      if (globals.output === "json") return printJson({ removed: name });
      process.stdout.write(`device ${name} removed\n`);
    });

  devices
    .command("read <name>")
    .description("one reading now")
    .action(async (name: string, _options: unknown, command: Command) => {
      const globals = globalsOf(command);
      const connection = await globals.connect();
      const { reading } = await connection.call(connection.client(DevicesService).readDevice({ name }));
      if (reading === undefined) throw new Error("the controller answered without a reading");
      if (globals.output === "json") return printJson(toJson(ReadingSchema, reading));
      process.stdout.write(`${readingText(reading)}\n`);
    });

  devices
    .command("write <name> <value...>")
    .description("digital: high/low/1/0; pwm: duty cycle 0..1 or 25%; spi/i2c: bytes (0x01 0x02 or 0102)")
    .action(async (name: string, values: string[], _options: unknown, command: Command) => {
      const globals = globalsOf(command);
      const connection = await globals.connect();
      const client = connection.client(DevicesService);
      const { device } = await connection.call(client.getDevice({ name }));
      let request: { name: string; value?: number; data?: Uint8Array };
      if (device?.kind === DeviceKind.SPI || device?.kind === DeviceKind.I2C) {
        request = { name, data: parseBytes(values, "VALUE") };
      } else {
        const text = (values[0] ?? "").toLowerCase();
        const level = { high: 1, on: 1, low: 0, off: 0 }[text];
        request = { name, value: level ?? parseNumber(values[0] ?? "", "VALUE") };
      }
      const answer = await connection.call(client.writeDevice(request));
      if (globals.output === "json") {
        return printJson({
          reading: answer.reading === undefined ? null : toJson(ReadingSchema, answer.reading),
        });
      }
      if (answer.pwm !== undefined) process.stdout.write(`${pwmLine(answer.pwm)}\n`);
      else if (answer.reading !== undefined) process.stdout.write(`${readingText(answer.reading)}\n`);
    });

  devices
    .command("watch <name>")
    .description("readings at a steady rate until Ctrl-C (or --count)")
    .option("--rate <hz>", "readings per second (0.1..1000)", "1")
    .option("--count <n>", "stop after n readings", "0")
    .action(async (name: string, options: { rate: string; count: string }, command: Command) => {
      const globals = globalsOf(command);
      const connection = await globals.connect(0);
      const stop = new AbortController();
      const onSignal = () => stop.abort();
      process.once("SIGINT", onSignal);
      try {
        const stream = connection.client(DevicesService).watchReadings(
          {
            name,
            rateHz: parseNumber(options.rate, "--rate"),
            maxReadings: BigInt(parseInteger(options.count, "--count")),
          },
          { signal: stop.signal },
        );
        await connection
          .call(
            (async () => {
              for await (const batch of stream) {
                for (const reading of batch.readings) {
                  process.stdout.write(
                    globals.output === "json"
                      ? `${JSON.stringify(toJson(ReadingSchema, reading))}\n`
                      : `${readingText(reading)}\n`,
                  );
                }
              }
            })(),
          )
          .catch((error: unknown) => {
            if (!stop.signal.aborted) throw error;
          });
      } finally {
        process.off("SIGINT", onSignal);
      }
    });

  devices
    .command("backends")
    .description("which driver serves each kind of hardware on a node, and why")
    .option("--node <node>", "node id or name (default: the controller's own node)", "")
    .action(async (options: { node: string }, command: Command) => {
      const globals = globalsOf(command);
      const connection = await globals.connect();
      const answer = await connection.call(
        connection.client(HardwareService).describeHardware({ nodeId: options.node }),
      );
      if (globals.output === "json")
        return printJson(answer.backends.map((b) => toJson(HardwareBackendSchema, b)));
      process.stdout.write(
        renderTable(
          ["kind", "backend", "devices", "why"],
          answer.backends.map((b) => [
            b.kind,
            `${b.backend}${b.simulated ? " (simulated)" : ""}`,
            b.devices.join(", ") || "-",
            b.reason,
          ]),
        ),
      );
    });
}
