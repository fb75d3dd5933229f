import { create } from "@bufbuild/protobuf";
import { timestampFromMs } from "@bufbuild/protobuf/wkt";
import type { HandlerContext, ServiceImpl } from "@connectrpc/connect";
import { CorralError, ErrorCode } from "../../base/errors.ts";
import {
  bytesValue,
  configNumber,
  type DeviceKind,
  type DeviceRecord,
  spiReadBytes,
} from "../../core/devices/device.ts";
import { DeviceRegistry } from "../../core/devices/device-registry.ts";
import { defaults } from "../../defaults.ts";
import {
  type Device,
  DeviceKind as DeviceKindEnum,
  DeviceSchema,
  type DevicesService,
  type Reading,
  ReadingSchema,
  type WatchReadingsResponse,
  WatchReadingsResponseSchema,
} from "../../gen/corral/v1/devices_pb.ts";
import {
  GetPwmRequestSchema,
  type GetPwmResponse,
  HardwareService,
  I2cReadRegisterRequestSchema,
  type I2cReadRegisterResponse,
  I2cWriteRegisterRequestSchema,
  type I2cWriteRegisterResponse,
  ReadAnalogRequestSchema,
  type ReadAnalogResponse,
  ReadPinRequestSchema,
  type ReadPinResponse,
  SampleInputRequestSchema,
  type SampleInputResponse,
  SampleSourceSchema,
  SetPwmRequestSchema,
  type SetPwmResponse,
  SpiTransferRequestSchema,
  type SpiTransferResponse,
  WritePinRequestSchema,
  type WritePinResponse,
} from "../../gen/corral/v1/hardware_pb.ts";
import { preciseTimestamp } from "../../wire/precise-timestamp.ts";
import type { FaceContext } from "../face-context.ts";
import { relayToNode } from "../node-relay.ts";

const kindToEnum: Record<DeviceKind, DeviceKindEnum> = {
  digital: DeviceKindEnum.DIGITAL,
  analog: DeviceKindEnum.ANALOG,
  pwm: DeviceKindEnum.PWM,
  spi: DeviceKindEnum.SPI,
  i2c: DeviceKindEnum.I2C,
};

function kindFromEnum(kind: DeviceKindEnum): DeviceKind {
  const found = (Object.entries(kindToEnum) as [DeviceKind, DeviceKindEnum][]).find(
    ([, value]) => value === kind,
  );
  if (found === undefined) throw CorralError.invalidArgument("kind", "use DIGITAL, ANALOG, PWM, SPI or I2C");
  return found[0];
}

/** The default PWM frequency of a device without "pwm_frequency_hz" (software PWM allows up to 100 Hz). */
const defaultPwmHz = 50;

type Call<Response> = (request: unknown, ctx: HandlerContext) => Promise<Response>;

/** The hardware calls used here, with the answers filled in (the local service and the relay both do). */
interface HardwareCalls {
  readPin: Call<ReadPinResponse>;
  writePin: Call<WritePinResponse>;
  readAnalog: Call<ReadAnalogResponse>;
  getPwm: Call<GetPwmResponse>;
  setPwm: Call<SetPwmResponse>;
  i2cReadRegister: Call<I2cReadRegisterResponse>;
  i2cWriteRegister: Call<I2cWriteRegisterResponse>;
  spiTransfer: Call<SpiTransferResponse>;
  sampleInput: (request: unknown, ctx: HandlerContext) => AsyncIterable<SampleInputResponse>;
}

/** `ctx` with another abort signal, so an upstream stream can be ended when the client's ends. */
function withSignal(ctx: HandlerContext, signal: AbortSignal): HandlerContext {
  return new Proxy(ctx, {
    get(target, property) {
      if (property === "signal") return signal;
      const value = Reflect.get(target, property, target) as unknown;
      return typeof value === "function" ? (value as (...args: unknown[]) => unknown).bind(target) : value;
    },
  });
}

/**
 * corral.v1.HardwareService on the controller: each call runs on the node its `node_id` names (id or
 * name; empty: the controller's own node), here or relayed to that node's agent.
 */
export function hardwareRelay(context: FaceContext): Partial<ServiceImpl<typeof HardwareService>> {
  return relayToNode(HardwareService, context, context.localHardware ?? {}, (request) =>
    ((request as { nodeId?: string }).nodeId ?? "").trim(),
  );
}

/**
 * corral.v1.DevicesService: named devices kept in the store, read, written and sampled through the
 * HardwareService of the node each is on (here for the controller's own node, relayed otherwise).
 */
export function devicesService(
  context: FaceContext,
  options: { maxPending?: number } = {},
): ServiceImpl<typeof DevicesService> {
  const devices = new DeviceRegistry(context.store, context.clock);
  const hardware = hardwareRelay(context) as unknown as HardwareCalls;
  const maxPending = options.maxPending ?? defaults.agentHardware.streamMaxPending;

  const nodeName = async (nodeId: string) => {
    try {
      return (await context.registry.get(nodeId)).name;
    } catch {
      return "";
    }
  };
  const message = async (device: DeviceRecord): Promise<Device> =>
    create(DeviceSchema, {
      ...device,
      kind: kindToEnum[device.kind],
      nodeName: await nodeName(device.nodeId),
      createdAt: timestampFromMs(device.createdAt),
    });
  const reading = (
    device: DeviceRecord,
    seq: bigint,
    value: number,
    raw: Uint8Array,
    at = Date.now(),
  ): Reading =>
    create(ReadingSchema, {
      device: device.name,
      seq,
      time: preciseTimestamp(at),
      value,
      raw,
      unit: device.config.unit ?? "",
    });
  const spiRequest = (device: DeviceRecord, data: Uint8Array) => ({
    nodeId: device.nodeId,
    bus: device.bus,
    chipSelect: device.chipSelect,
    data,
    speedHz: configNumber(device, "spi_speed_hz", 0),
    mode: configNumber(device, "spi_mode", 0),
  });

  async function readOnce(device: DeviceRecord, ctx: HandlerContext): Promise<Reading> {
    const nodeId = device.nodeId;
    switch (device.kind) {
      case "digital": {
        const { pin } = await hardware.readPin(
          create(ReadPinRequestSchema, { nodeId, chip: device.chip, pin: device.pin }),
          ctx,
        );
        const level = pin?.level ?? 0;
        return reading(device, 1n, level, Uint8Array.of(level));
      }
      case "analog": {
        const answer = await hardware.readAnalog(
          create(ReadAnalogRequestSchema, { nodeId, device: device.iioDevice, channel: device.register }),
          ctx,
        );
        const raw = new Uint8Array(4);
        new DataView(raw.buffer).setInt32(0, Number(answer.raw));
        return reading(device, 1n, answer.value, raw);
      }
      case "pwm": {
        const { pwm } = await hardware.getPwm(
          create(GetPwmRequestSchema, { nodeId, chip: device.chip, pin: device.pin }),
          ctx,
        );
        return reading(device, 1n, pwm?.enabled === true ? pwm.dutyCycle : 0, new Uint8Array());
      }
      case "i2c": {
        const { data } = await hardware.i2cReadRegister(
          create(I2cReadRegisterRequestSchema, {
            nodeId,
            bus: device.bus,
            address: device.address,
            register: device.register,
            length: device.length,
          }),
          ctx,
        );
        return reading(device, 1n, bytesValue(data), data);
      }
      case "spi": {
        const { data } = await hardware.spiTransfer(
          create(SpiTransferRequestSchema, spiRequest(device, spiReadBytes(device))),
          ctx,
        );
        return reading(device, 1n, bytesValue(data), data);
      }
    }
  }

  return {
    async listDevices(request) {
      const filter = request.nodeId.trim();
      const nodeId = filter === "" ? undefined : (await context.registry.get(filter)).id;
      const list = await devices.list(nodeId);
      return { devices: await Promise.all(list.map(message)) };
    },

    async getDevice(request) {
      return { device: await message(await devices.get(request.name)) };
    },

    async addDevice(request) {
      const input = request.device;
      if (input === undefined) throw CorralError.invalidArgument("device", "is required");
      const target = input.nodeId.trim() === "" ? context.facts.controllerNodeId : input.nodeId.trim();
      const node = await context.registry.get(target);
      const added = await devices.add({
        name: input.name,
        nodeId: node.id,
        kind: kindFromEnum(input.kind),
        chip: input.chip,
        pin: input.pin,
        bus: input.bus,
        address: input.address,
        chipSelect: input.chipSelect,
        register: input.register,
        length: input.length,
        iioDevice: input.iioDevice,
        config: { ...input.config },
      });
      return { device: await message(added) };
    },

    async removeDevice(request) {
      await devices.remove(request.name);
      return {};
    },

    async readDevice(request, ctx) {
      return { reading: await readOnce(await devices.get(request.name), ctx) };
    },

    async writeDevice(request, ctx) {
      const device = await devices.get(request.name);
      const nodeId = device.nodeId;
      switch (device.kind) {
        case "digital": {
          if (request.value !== 0 && request.value !== 1) {
            throw CorralError.invalidArgument("value", `${request.value}: a digital device takes 0 or 1`);
          }
          const { pin } = await hardware.writePin(
            create(WritePinRequestSchema, {
              nodeId,
              chip: device.chip,
              pin: device.pin,
              level: request.value,
            }),
            ctx,
          );
          const level = pin?.level ?? request.value;
          return { reading: reading(device, 1n, level, Uint8Array.of(level)) };
        }
        case "pwm": {
          const { pwm } = await hardware.setPwm(
            create(SetPwmRequestSchema, {
              nodeId,
              chip: device.chip,
              pin: device.pin,
              enabled: request.value > 0,
              frequencyHz: configNumber(device, "pwm_frequency_hz", defaultPwmHz),
              dutyCycle: request.value,
            }),
            ctx,
          );
          return {
            reading: reading(device, 1n, pwm?.enabled === true ? pwm.dutyCycle : 0, new Uint8Array()),
            ...(pwm === undefined ? {} : { pwm }),
          };
        }
        case "i2c": {
          await hardware.i2cWriteRegister(
            create(I2cWriteRegisterRequestSchema, {
              nodeId,
              bus: device.bus,
              address: device.address,
              register: device.register,
              data: request.data,
            }),
            ctx,
          );
          return { reading: await readOnce(device, ctx) };
        }
        case "spi": {
          const { data } = await hardware.spiTransfer(
            create(SpiTransferRequestSchema, spiRequest(device, request.data)),
            ctx,
          );
          return { reading: reading(device, 1n, bytesValue(data), data) };
        }
        case "analog":
          throw new CorralError(
            ErrorCode.FailedPrecondition,
            `device "${device.name}" is an analog input; it cannot be written`,
          );
      }
    },

    async *watchReadings(request, ctx): AsyncGenerator<WatchReadingsResponse> {
      const device = await devices.get(request.name);
      const source = (() => {
        switch (device.kind) {
          case "digital":
            return { case: "pin" as const, value: { chip: device.chip, pin: device.pin } };
          case "pwm":
            return { case: "pwm" as const, value: { chip: device.chip, pin: device.pin } };
          case "analog":
            return { case: "analog" as const, value: { device: device.iioDevice, channel: device.register } };
          case "i2c":
            return {
              case: "i2c" as const,
              value: {
                bus: device.bus,
                address: device.address,
                register: device.register,
                length: device.length,
              },
            };
          case "spi": {
            const spi = spiRequest(device, spiReadBytes(device));
            return { case: "spi" as const, value: { ...spi } };
          }
        }
      })();
      const upstreamAbort = new AbortController();
      const onAbort = () => upstreamAbort.abort();
      ctx.signal.addEventListener("abort", onAbort);
      const upstream = hardware.sampleInput(
        create(SampleInputRequestSchema, {
          nodeId: device.nodeId,
          source: create(SampleSourceSchema, { source }),
          rateHz: request.rateHz,
          maxSamples: request.maxReadings,
        }),
        withSignal(ctx, upstreamAbort.signal),
      ) as AsyncIterable<SampleInputResponse>;

      // The node's samples are pumped into a bounded queue; the client takes them at its pace. A client
      // more than maxPending readings behind is dropped rather than buffered without bound.
      const queue: Reading[] = [];
      let failure: unknown;
      let finished = false;
      let wake: (() => void) | undefined;
      const notify = () => {
        const resolve = wake;
        wake = undefined;
        resolve?.();
      };
      const pump = (async () => {
        try {
          for await (const batch of upstream) {
            for (const sample of batch.samples) {
              const at =
                sample.time === undefined
                  ? Date.now()
                  : Number(sample.time.seconds) * 1000 + sample.time.nanos / 1e6;
              queue.push(reading(device, sample.seq, sample.value, sample.raw, at));
            }
            if (queue.length > maxPending) {
              failure = new CorralError(
                ErrorCode.ResourceExhausted,
                `the reader of "${device.name}" fell more than ${maxPending} readings behind; it was dropped`,
                { details: { maxPending: String(maxPending) } },
              );
              queue.length = 0;
              upstreamAbort.abort();
              break;
            }
            notify();
          }
        } catch (error) {
          if (!upstreamAbort.signal.aborted) failure = error;
        } finally {
          finished = true;
          notify();
        }
      })();
      try {
        for (;;) {
          if (failure !== undefined) throw failure;
          if (queue.length > 0) {
            yield create(WatchReadingsResponseSchema, {
              readings: queue.splice(0, defaults.agentHardware.sampleMaxBatch),
            });
            continue;
          }
          if (finished || ctx.signal.aborted) return;
          await new Promise<void>((resolve) => {
            wake = resolve;
          });
        }
      } finally {
        ctx.signal.removeEventListener("abort", onAbort);
        upstreamAbort.abort();
        await pump;
      }
    },
  };
}
