import { create } from "@bufbuild/protobuf";
import type { HandlerContext } from "@connectrpc/connect";
import { CorralError } from "../../base/errors.ts";
import {
  bytesValue,
  configNumber,
  type DeviceKind,
  type DeviceRecord,
  spiReadBytes,
} from "../../core/devices/device.ts";
import { DeviceKind as DeviceKindEnum, type Reading } from "../../gen/corral/v1/devices_pb.ts";
import type {
  GetPwmResponse,
  I2cReadRegisterResponse,
  I2cWriteRegisterResponse,
  ReadAnalogResponse,
  ReadPinResponse,
  SampleInputResponse,
  SetPwmResponse,
  SpiTransferResponse,
  WritePinResponse,
} from "../../gen/corral/v1/hardware_pb.ts";
import {
  GetPwmRequestSchema,
  I2cReadRegisterRequestSchema,
  ReadAnalogRequestSchema,
  ReadPinRequestSchema,
  SpiTransferRequestSchema,
} from "../../gen/corral/v1/hardware_pb.ts";

export const kindToEnum: Record<DeviceKind, DeviceKindEnum> = {
  digital: DeviceKindEnum.DIGITAL,
  analog: DeviceKindEnum.ANALOG,
  pwm: DeviceKindEnum.PWM,
  spi: DeviceKindEnum.SPI,
  i2c: DeviceKindEnum.I2C,
};

export function kindFromEnum(kind: DeviceKindEnum): DeviceKind {
  const found = (Object.entries(kindToEnum) as [DeviceKind, DeviceKindEnum][]).find(
    ([, value]) => value === kind,
  );
  if (found === undefined) throw CorralError.invalidArgument("kind", "use DIGITAL, ANALOG, PWM, SPI or I2C");
  return found[0];
}

/** The default PWM frequency of a device without "pwm_frequency_hz" (software PWM allows up to 100 Hz). */
export const defaultPwmHz = 50;

type Call<Response> = (request: unknown, ctx: HandlerContext) => Promise<Response>;

/** The hardware calls devices use, with the answers filled in (the local service and the relay both do). */
export interface HardwareCalls {
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
export function withSignal(ctx: HandlerContext, signal: AbortSignal): HandlerContext {
  return new Proxy(ctx, {
    get(target, property) {
      if (property === "signal") return signal;
      const value = Reflect.get(target, property, target) as unknown;
      return typeof value === "function" ? (value as (...args: unknown[]) => unknown).bind(target) : value;
    },
  });
}

/** A SpiTransfer request for `device` sending `data`, with its configured speed and mode. */
export function spiRequest(device: DeviceRecord, data: Uint8Array) {
  return {
    nodeId: device.nodeId,
    bus: device.bus,
    chipSelect: device.chipSelect,
    data,
    speedHz: configNumber(device, "spi_speed_hz", 0),
    mode: configNumber(device, "spi_mode", 0),
  };
}

/** What SampleInput samples for `device` (its `source` oneof). */
export function sampleSourceOf(device: DeviceRecord) {
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
}

/** A reading of `device` as the face answers it (its unit, the time it was taken). */
export type ReadingOf = (device: DeviceRecord, seq: bigint, value: number, raw: Uint8Array) => Reading;

/** One reading of `device`, taken through its node's hardware. */
export async function readOnce(
  hardware: HardwareCalls,
  device: DeviceRecord,
  ctx: HandlerContext,
  reading: ReadingOf,
): Promise<Reading> {
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
