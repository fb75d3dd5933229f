import { toJson } from "@bufbuild/protobuf";
import type { Command } from "commander";
import { parseDuration } from "../../base/duration.ts";
import { CorralError } from "../../base/errors.ts";
import { enumText } from "../../client/format.ts";
import {
  HardwareService,
  PinDirection,
  PinEdge,
  PinEventKind,
  PinEventSchema,
  type PinInfo,
  PinInfoSchema,
  PinPull,
  type PwmState,
  PwmStateSchema,
} from "../../gen/corral/v1/hardware_pb.ts";
import { globalsOf } from "../global-options.ts";
import { printJson, renderTable } from "../output.ts";
import { nodeOption, parseInteger, parseNumber } from "./devices-args.ts";

interface NodeChip {
  node: string;
  chip: string;
}

export function parsePull(text: string): PinPull {
  const pull = { up: PinPull.UP, down: PinPull.DOWN, none: PinPull.NONE, off: PinPull.NONE }[
    text.toLowerCase()
  ];
  if (pull === undefined) throw CorralError.invalidArgument("--pull", `"${text}": use up, down or none`);
  return pull;
}

export function parseEdge(text: string): PinEdge {
  const edge = { rising: PinEdge.RISING, falling: PinEdge.FALLING, both: PinEdge.BOTH, none: PinEdge.NONE }[
    text.toLowerCase()
  ];
  if (edge === undefined)
    throw CorralError.invalidArgument("--edge", `"${text}": use rising, falling, both or none`);
  return edge;
}

function parseLevel(text: string, field: string): number {
  const level = { high: 1, "1": 1, on: 1, low: 0, "0": 0, off: 0 }[text.toLowerCase()];
  if (level === undefined) throw CorralError.invalidArgument(field, `"${text}" is not high or low`);
  return level;
}

export function pinLine(pin: PinInfo): string {
  const config = pin.config;
  const flags = [
    config === undefined ? "" : enumText(PinDirection, config.direction),
    config === undefined || config.pull === PinPull.NONE ? "" : `pull-${enumText(PinPull, config.pull)}`,
    config?.activeLow === true ? "active-low" : "",
    (config?.debounceMs ?? 0) > 0 ? `debounce ${config?.debounceMs} ms` : "",
    pin.pwm ? "pwm" : "",
    pin.consumer === "" ? "" : `used by ${pin.consumer}`,
  ].filter((flag) => flag !== "");
  return `${pin.chip} pin ${pin.pin} is ${pin.level === 1 ? "HIGH" : "LOW"} (${flags.join(", ")})`;
}

export function pwmLine(pwm: PwmState): string {
  if (!pwm.enabled) return `pin ${pwm.pin}: PWM off (${pwm.hardware ? pwm.channel : "software"})`;
  return `pin ${pwm.pin}: PWM ${pwm.frequencyHz} Hz, duty ${(pwm.dutyCycle * 100).toFixed(1)}% (${pwm.hardware ? `hardware ${pwm.channel}` : "software"})`;
}

/** Adds `config`, `watch`, `pwm` and `pins` to the `corral gpio` command (`set`/`get`/`pulse` are Pi-Controller's). */
export function registerGpioCommands(program: Command): void {
  const gpio =
    program.commands.find((command) => command.name() === "gpio") ??
    program.command("gpio").description("drive and read a node's GPIO pins");

  gpio
    .command("pins")
    .description("every line of a chip: direction, pull, level")
    .option(...nodeOption)
    .option("--chip <chip>", "GPIO chip (default: the node's first)", "")
    .action(async (options: NodeChip, command: Command) => {
      const globals = globalsOf(command);
      const connection = await globals.connect();
      const answer = await connection.call(
        connection.client(HardwareService).listPins({ nodeId: options.node, chip: options.chip }),
      );
      if (globals.output === "json") return printJson(answer.pins.map((pin) => toJson(PinInfoSchema, pin)));
      process.stdout.write(
        renderTable(
          ["pin", "name", "direction", "pull", "active-low", "level", "used by"],
          answer.pins.map((pin) => [
            String(pin.pin),
            pin.name || "-",
            enumText(PinDirection, pin.config?.direction ?? 0),
            enumText(PinPull, pin.config?.pull ?? 0),
            pin.config?.activeLow === true ? "yes" : "no",
            pin.pwm ? "pwm" : pin.level === 1 ? "HIGH" : "LOW",
            pin.consumer || "-",
          ]),
        ),
      );
    });

  gpio
    .command("config <pin>")
    .description("configure a line: direction, pull, active-low, debounce, edge detection")
    .option(...nodeOption)
    .option("--chip <chip>", "GPIO chip (default: the node's first)", "")
    .option("--input", "make it an input")
    .option("--output", "make it an output")
    .option("--pull <pull>", "up, down or none", parsePull)
    .option("--active-low", "1 is the low voltage")
    .option("--active-high", "1 is the high voltage (the default)")
    .option("--debounce <duration>", "an input's level must be stable this long (e.g. 10ms; at most 1s)")
    .option("--edge <edge>", "edges detected: rising, falling, both, none", parseEdge)
    .option("--level <level>", "an output's level (high or low)")
    .action(
      async (
        pinText: string,
        options: NodeChip & {
          input?: boolean;
          output?: boolean;
          pull?: PinPull;
          activeLow?: boolean;
          activeHigh?: boolean;
          debounce?: string;
          edge?: PinEdge;
          level?: string;
        },
        command: Command,
      ) => {
        if (options.input === true && options.output === true) {
          throw CorralError.invalidArgument("--input/--output", "choose one");
        }
        const globals = globalsOf(command);
        const connection = await globals.connect();
        const hardware = connection.client(HardwareService);
        const pin = parseInteger(pinText, "PIN");
        // Flags left out keep the line's current setting.
        const current = (
          await connection.call(hardware.readPin({ nodeId: options.node, chip: options.chip, pin }))
        ).pin?.config;
        const answer = await connection.call(
          hardware.configurePin({
            nodeId: options.node,
            chip: options.chip,
            pin,
            config: {
              direction:
                options.output === true
                  ? PinDirection.OUTPUT
                  : options.input === true
                    ? PinDirection.INPUT
                    : (current?.direction ?? PinDirection.UNSPECIFIED),
              pull: options.pull ?? current?.pull ?? PinPull.UNSPECIFIED,
              activeLow:
                options.activeLow === true
                  ? true
                  : options.activeHigh === true
                    ? false
                    : (current?.activeLow ?? false),
              debounceMs:
                options.debounce === undefined
                  ? (current?.debounceMs ?? 0)
                  : parseDuration(options.debounce, "--debounce"),
              edge: options.edge ?? current?.edge ?? PinEdge.UNSPECIFIED,
            },
            ...(options.level === undefined ? {} : { initialLevel: parseLevel(options.level, "--level") }),
          }),
        );
        if (answer.pin === undefined) throw new Error("the node answered without the pin");
        if (globals.output === "json") return printJson(toJson(PinInfoSchema, answer.pin));
        process.stdout.write(`${pinLine(answer.pin)}\n`);
      },
    );

  gpio
    .command("watch [pins...]")
    .description("stream the lines' levels, then every edge, until Ctrl-C")
    .option(...nodeOption)
    .option("--chip <chip>", "GPIO chip (default: the node's first)", "")
    .option("--edge <edge>", "rising, falling or both", parseEdge)
    .option("--count <n>", "stop after n edges")
    .option("--no-current", "do not print the current levels first")
    .action(
      async (
        pins: string[],
        options: NodeChip & { edge?: PinEdge; count?: string; current: boolean },
        command: Command,
      ) => {
        const globals = globalsOf(command);
        const connection = await globals.connect(0);
        const limit = options.count === undefined ? 0 : parseInteger(options.count, "--count");
        const stop = new AbortController();
        const onSignal = () => stop.abort();
        process.once("SIGINT", onSignal);
        try {
          const stream = connection.client(HardwareService).watchPins(
            {
              nodeId: options.node,
              chip: options.chip,
              pins: pins.map((pin) => parseInteger(pin, "PIN")),
              skipCurrent: !options.current,
              edge: options.edge ?? PinEdge.BOTH,
            },
            { signal: stop.signal },
          );
          let edges = 0;
          await connection
            .call(
              (async () => {
                for await (const { event } of stream) {
                  if (event === undefined) continue;
                  if (globals.output === "json") {
                    process.stdout.write(`${JSON.stringify(toJson(PinEventSchema, event))}\n`);
                  } else {
                    const at =
                      event.time === undefined
                        ? ""
                        : new Date(Number(event.time.seconds) * 1000 + event.time.nanos / 1e6).toISOString();
                    process.stdout.write(
                      `${at} ${event.chip} pin ${event.pin} ${enumText(PinEventKind, event.kind)} ${event.level === 1 ? "HIGH" : "LOW"}\n`,
                    );
                  }
                  if (event.kind !== PinEventKind.CURRENT && limit > 0 && ++edges >= limit) {
                    stop.abort();
                    break;
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
      },
    );

  gpio
    .command("pwm <pin>")
    .description("PWM on a line: --freq and --duty start or change it, --off stops it, neither shows it")
    .option(...nodeOption)
    .option("--chip <chip>", "GPIO chip (default: the node's first)", "")
    .option("--freq <hz>", "frequency in Hz")
    .option("--duty <fraction>", "duty cycle: 0..1 or a percentage (25%)")
    .option("--off", "stop PWM (the line stays low)")
    .action(
      async (
        pinText: string,
        options: NodeChip & { freq?: string; duty?: string; off?: boolean },
        command: Command,
      ) => {
        const globals = globalsOf(command);
        const connection = await globals.connect();
        const hardware = connection.client(HardwareService);
        const pin = parseInteger(pinText, "PIN");
        const target = { nodeId: options.node, chip: options.chip, pin };
        let pwm: PwmState | undefined;
        if (options.off === true) {
          pwm = (await connection.call(hardware.setPwm({ ...target, enabled: false }))).pwm;
        } else if (options.freq !== undefined || options.duty !== undefined) {
          const current = (await connection.call(hardware.getPwm(target))).pwm;
          pwm = (
            await connection.call(
              hardware.setPwm({
                ...target,
                enabled: true,
                frequencyHz:
                  options.freq === undefined
                    ? current?.enabled === true
                      ? current.frequencyHz
                      : 50
                    : parseNumber(options.freq, "--freq"),
                dutyCycle:
                  options.duty === undefined
                    ? current?.enabled === true
                      ? current.dutyCycle
                      : 0.5
                    : parseNumber(options.duty, "--duty"),
              }),
            )
          ).pwm;
        } else {
          pwm = (await connection.call(hardware.getPwm(target))).pwm;
        }
        if (pwm === undefined) throw new Error("the node answered without the PWM state");
        if (globals.output === "json") return printJson(toJson(PwmStateSchema, pwm));
        process.stdout.write(`${pwmLine(pwm)}\n`);
      },
    );
}
