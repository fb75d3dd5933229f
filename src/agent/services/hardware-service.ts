import { create } from "@bufbuild/protobuf";
import { timestampFromMs } from "@bufbuild/protobuf/wkt";
import type { ServiceImpl } from "@connectrpc/connect";
import { parseDuration } from "../../base/duration.ts";
import { CorralError, ErrorCode } from "../../base/errors.ts";
import { checkIntIn } from "../../core/devices/device-limits.ts";
import { defaults } from "../../defaults.ts";
import {
  HardwareBackendSchema,
  type HardwareService,
  PinConfigSchema,
  PinDirection,
  PinEdge,
  PinEventKind,
  PinEventSchema,
  type PinInfo,
  PinInfoSchema,
  PinPull,
  type PwmState,
  PwmStateSchema,
  SampleSchema,
  type SampleSource,
  type WatchPinsResponse,
  WatchPinsResponseSchema,
} from "../../gen/corral/v1/hardware_pb.ts";
import { preciseTimestamp } from "../../wire/precise-timestamp.ts";
import {
  checkLevel,
  type PinEdge as EdgeName,
  type GpioLevel,
  type PinSettings,
  type PinStatus,
  resolveChip,
} from "../hardware/gpio/gpio-backend.ts";
import type { BackendChoice, Hardware } from "../hardware/hardware.ts";
import type { PwmStatus } from "../hardware/pwm.ts";
import { type SampleSourceSpec, sampleStream, sourceReader } from "../hardware/sampler.ts";

/** One hardware write, for the node's audit trail. */
export interface HardwareAuditEntry {
  action: string;
  target: string;
  detail: string;
}

export interface HardwareServiceDeps {
  hardware: Hardware;
  nodeId: () => string;
  /** Called for every write (pin, configuration, PWM, SPI, I²C), before it answers. */
  audit: (entry: HardwareAuditEntry) => void;
  /** Events or samples a slow reader may leave waiting before it is dropped; default from defaults. */
  maxPending?: number;
}

const directionOf = { input: PinDirection.INPUT, output: PinDirection.OUTPUT } as const;
const pullOf = { none: PinPull.NONE, up: PinPull.UP, down: PinPull.DOWN } as const;
const edgeOf = {
  none: PinEdge.NONE,
  rising: PinEdge.RISING,
  falling: PinEdge.FALLING,
  both: PinEdge.BOTH,
} as const;

function edgeName(edge: PinEdge): EdgeName | undefined {
  switch (edge) {
    case PinEdge.NONE:
      return "none";
    case PinEdge.RISING:
      return "rising";
    case PinEdge.FALLING:
      return "falling";
    case PinEdge.BOTH:
      return "both";
    default:
      return undefined;
  }
}

export function pinInfoMessage(status: PinStatus, pwm = false): PinInfo {
  return create(PinInfoSchema, {
    chip: status.chip,
    pin: status.pin,
    name: status.name ?? "",
    config: create(PinConfigSchema, {
      direction: directionOf[status.settings.direction],
      pull: pullOf[status.settings.pull],
      activeLow: status.settings.activeLow,
      debounceMs: status.settings.debounceMs,
      edge: edgeOf[status.settings.edge],
    }),
    level: status.level,
    consumer: status.consumer ?? "",
    pwm,
  });
}

export function pwmStateMessage(status: PwmStatus): PwmState {
  return create(PwmStateSchema, status);
}

export function backendMessage(choice: BackendChoice) {
  return create(HardwareBackendSchema, choice);
}

/** A SampleSource message as the sampler's spec; INVALID_ARGUMENT when none is set. */
export function sampleSourceSpec(source: SampleSource | undefined): SampleSourceSpec {
  const which = source?.source;
  switch (which?.case) {
    case "pin":
      return { kind: "pin", chip: which.value.chip, pin: which.value.pin };
    case "analog":
      return { kind: "analog", device: which.value.device, channel: which.value.channel };
    case "i2c":
      return { kind: "i2c", ...which.value, register: which.value.register };
    case "spi":
      return {
        kind: "spi",
        bus: which.value.bus,
        chipSelect: which.value.chipSelect,
        data: which.value.data,
        speedHz: which.value.speedHz,
        mode: which.value.mode,
      };
    case "pwm":
      return { kind: "pwm", chip: which.value.chip, pin: which.value.pin };
    default:
      throw CorralError.invalidArgument(
        "source",
        "name a pin, an analog channel, an I²C register, an SPI transfer or a PWM line",
      );
  }
}

const hexBytes = (data: Uint8Array) => Buffer.from(data).toString("hex");
const hex2 = (n: number) => `0x${n.toString(16).padStart(2, "0")}`;
const chipOf = (chip: string) => (chip === "" ? undefined : chip);

/**
 * corral.v1.HardwareService on one node, over its hardware backends. The controller relays calls for
 * other nodes to their agents (by node_id); here node_id is ignored.
 */
export function hardwareService(deps: HardwareServiceDeps): ServiceImpl<typeof HardwareService> {
  const { hardware, audit } = deps;
  const { gpio, pwm } = hardware;
  const maxPending = deps.maxPending ?? defaults.agentHardware.streamMaxPending;
  const info = (status: PinStatus) => pinInfoMessage(status, pwm.active(status.chip, status.pin));

  return {
    async describeHardware() {
      return { nodeId: deps.nodeId(), backends: hardware.choices.map(backendMessage) };
    },

    async listPins(request) {
      const chip = resolveChip(gpio.chips, chipOf(request.chip));
      const pins = await gpio.list(chip);
      return { chip, chips: [...gpio.chips], backend: gpio.kind, pins: pins.map(info) };
    },

    async readPin(request) {
      const chip = chipOf(request.chip);
      await gpio.read(request.pin, chip);
      return { pin: info(await gpio.status(request.pin, chip)) };
    },

    async writePin(request) {
      const chip = chipOf(request.chip);
      const level = checkLevel(request.level);
      await gpio.write(request.pin, level, chip);
      const status = await gpio.status(request.pin, chip);
      audit({ action: "gpio.write", target: `${status.chip} line ${status.pin}`, detail: `level ${level}` });
      return { pin: info(status) };
    },

    async configurePin(request) {
      const chip = chipOf(request.chip);
      const current = (await gpio.status(request.pin, chip)).settings;
      const config = request.config;
      const settings: PinSettings = {
        direction:
          config?.direction === PinDirection.OUTPUT
            ? "output"
            : config?.direction === PinDirection.INPUT
              ? "input"
              : current.direction,
        pull:
          config?.pull === PinPull.UP
            ? "up"
            : config?.pull === PinPull.DOWN
              ? "down"
              : config?.pull === PinPull.NONE
                ? "none"
                : current.pull,
        activeLow: config === undefined ? current.activeLow : config.activeLow,
        debounceMs: config === undefined ? current.debounceMs : config.debounceMs,
        edge: (config === undefined ? undefined : edgeName(config.edge)) ?? current.edge,
      };
      const initial = request.initialLevel === undefined ? undefined : checkLevel(request.initialLevel);
      const status = await gpio.configure(request.pin, settings, chip, initial);
      audit({
        action: "gpio.configure",
        target: `${status.chip} line ${status.pin}`,
        detail: `${settings.direction} pull=${settings.pull} active-low=${settings.activeLow} debounce=${settings.debounceMs}ms edge=${settings.edge}${initial === undefined ? "" : ` level ${initial}`}`,
      });
      return { pin: info(status) };
    },

    async *watchPins(request, ctx): AsyncGenerator<WatchPinsResponse> {
      const chip = resolveChip(gpio.chips, chipOf(request.chip));
      const lines = gpio.lines(chip);
      const pins =
        request.pins.length === 0
          ? Array.from({ length: lines }, (_, i) => i)
          : [...new Set(request.pins.map((pin) => checkIntIn("pins", pin, 0, lines - 1)))];
      const edge = edgeName(request.edge) ?? "both";
      let seq = 0n;
      const event = (pin: number, kind: PinEventKind, level: GpioLevel, at: number) =>
        create(WatchPinsResponseSchema, {
          event: create(PinEventSchema, { chip, pin, kind, level, time: timestampFromMs(at), seq: ++seq }),
        });
      const queue: WatchPinsResponse[] = [];
      let failure: unknown;
      let wake: (() => void) | undefined;
      const notify = () => {
        const resolve = wake;
        wake = undefined;
        resolve?.();
      };
      const last = new Map<number, GpioLevel>();
      const watch = gpio.watch({
        chip,
        pins,
        onChange: (change) => {
          if (failure !== undefined) return;
          if (last.get(change.pin) === change.level) return;
          last.set(change.pin, change.level);
          const rising = change.level === 1;
          if (edge === "none" || (edge === "rising" && !rising) || (edge === "falling" && rising)) return;
          queue.push(
            event(change.pin, rising ? PinEventKind.RISING : PinEventKind.FALLING, change.level, change.at),
          );
          if (queue.length > maxPending) {
            failure = new CorralError(
              ErrorCode.ResourceExhausted,
              `the watcher fell more than ${maxPending} events behind; it was dropped`,
            );
            queue.length = 0;
          }
          notify();
        },
        onError: (error) => {
          failure ??= error;
          notify();
        },
      });
      const onAbort = () => notify();
      ctx.signal.addEventListener("abort", onAbort);
      try {
        // The current levels are read after the watch starts, so no change falls between the two.
        const current: WatchPinsResponse[] = [];
        for (const pin of pins) {
          const status = await gpio.status(pin, chip);
          if (!last.has(pin)) last.set(pin, status.level);
          if (!request.skipCurrent) current.push(event(pin, PinEventKind.CURRENT, status.level, Date.now()));
        }
        for (const message of current) yield message;
        while (!ctx.signal.aborted) {
          if (failure !== undefined) throw failure;
          const next = queue.shift();
          if (next !== undefined) {
            yield next;
            continue;
          }
          await new Promise<void>((resolve) => {
            wake = resolve;
          });
        }
      } finally {
        ctx.signal.removeEventListener("abort", onAbort);
        watch.close();
      }
    },

    async setPwm(request) {
      const status = await pwm.set(
        request.pin,
        { enabled: request.enabled, frequencyHz: request.frequencyHz, dutyCycle: request.dutyCycle },
        chipOf(request.chip),
      );
      audit({
        action: "pwm.set",
        target: `${status.chip} line ${status.pin} (${status.channel})`,
        detail: request.enabled ? `${request.frequencyHz} Hz, duty ${request.dutyCycle}` : "disabled",
      });
      return { pwm: pwmStateMessage(status) };
    },

    async getPwm(request) {
      return { pwm: pwmStateMessage(await pwm.get(request.pin, chipOf(request.chip))) };
    },

    async spiTransfer(request) {
      const data = await hardware.spi.transfer({
        bus: request.bus,
        chipSelect: request.chipSelect,
        data: request.data,
        speedHz: request.speedHz,
        mode: request.mode,
      });
      audit({
        action: "spi.transfer",
        target: `spidev${request.bus}.${request.chipSelect}`,
        detail: `sent ${hexBytes(request.data)}`,
      });
      return { data };
    },

    async i2cRead(request) {
      return { data: await hardware.i2c.read(request.bus, request.address, request.length) };
    },

    async i2cWrite(request) {
      const written = await hardware.i2c.write(request.bus, request.address, request.data);
      audit({
        action: "i2c.write",
        target: `i2c-${request.bus} ${hex2(request.address)}`,
        detail: hexBytes(request.data),
      });
      return { written };
    },

    async i2cReadRegister(request) {
      return {
        data: await hardware.i2c.readRegister(request.bus, request.address, request.register, request.length),
      };
    },

    async i2cWriteRegister(request) {
      const written = await hardware.i2c.writeRegister(
        request.bus,
        request.address,
        request.register,
        request.data,
      );
      audit({
        action: "i2c.write-register",
        target: `i2c-${request.bus} ${hex2(request.address)} register ${hex2(request.register)}`,
        detail: hexBytes(request.data),
      });
      return { written };
    },

    async readAnalog(request) {
      const { value, raw } = await hardware.analog.read(request.device, request.channel);
      return { value, raw: BigInt(Math.round(raw)) };
    },

    async *sampleInput(request, ctx) {
      const read = sourceReader(hardware, sampleSourceSpec(request.source));
      for await (const batch of sampleStream({
        read,
        rateHz: request.rateHz,
        maxSamples: Number(request.maxSamples),
        signal: ctx.signal,
        maxPending,
        maxBatch: defaults.agentHardware.sampleMaxBatch,
        flushMs: parseDuration(defaults.agentHardware.sampleFlushInterval),
      })) {
        yield {
          samples: batch.map((sample) =>
            create(SampleSchema, {
              seq: BigInt(sample.seq),
              time: preciseTimestamp(sample.at),
              value: sample.value,
              raw: sample.raw,
            }),
          ),
        };
      }
    },
  };
}
