import { CorralError, ErrorCode } from "../../base/errors.ts";
import {
  checkBus,
  checkI2cAddress,
  checkI2cLength,
  checkI2cRegister,
  checkIntIn,
  hardwareLimits,
} from "./device-limits.ts";

export const deviceKinds = ["digital", "analog", "pwm", "spi", "i2c"] as const;
export type DeviceKind = (typeof deviceKinds)[number];

/** A named device on a node, as kept in the store. Fields a kind does not use are 0 / "". */
export interface DeviceRecord {
  name: string;
  nodeId: string;
  kind: DeviceKind;
  /** digital, pwm: the GPIO chip ("" = the node's first) and line. */
  chip: string;
  pin: number;
  /** spi, i2c */
  bus: number;
  /** i2c */
  address: number;
  /** spi */
  chipSelect: number;
  /** i2c: register; analog: the channel. */
  register: number;
  /** i2c, spi: bytes read. */
  length: number;
  /** analog: the IIO device ("" = the node's first). */
  iioDevice: string;
  config: Record<string, string>;
  createdAt: number;
}

export type DeviceInput = Omit<DeviceRecord, "createdAt">;

export const deviceKeyPrefix = "/devices/";

export function deviceKey(name: string): string {
  return deviceKeyPrefix + encodeURIComponent(name);
}

const namePattern = /^[a-z0-9][a-z0-9._-]{0,62}$/;
const maxConfigEntries = 32;
const maxConfigValue = 1024;

/** The device as it will be stored: every field checked for its kind, unused fields zeroed. */
export function buildDeviceRecord(input: DeviceInput, now: number): DeviceRecord {
  if (!namePattern.test(input.name)) {
    throw CorralError.invalidArgument(
      "name",
      `"${input.name}" is not a device name: [a-z0-9][a-z0-9._-]{0,62}`,
    );
  }
  if (input.nodeId.trim() === "")
    throw CorralError.invalidArgument("node_id", "name the node the device is on");
  if (!deviceKinds.includes(input.kind)) {
    throw CorralError.invalidArgument("kind", `use one of ${deviceKinds.join(", ")}`);
  }
  const entries = Object.entries(input.config);
  if (entries.length > maxConfigEntries) {
    throw CorralError.invalidArgument("config", `at most ${maxConfigEntries} entries`);
  }
  for (const [key, value] of entries) {
    if (!/^[a-z0-9_.-]{1,64}$/.test(key) || value.length > maxConfigValue) {
      throw CorralError.invalidArgument(
        "config",
        `"${key}": keys are [a-z0-9_.-]{1,64}, values at most ${maxConfigValue} characters`,
      );
    }
  }
  const record: DeviceRecord = {
    name: input.name,
    nodeId: input.nodeId,
    kind: input.kind,
    chip: "",
    pin: 0,
    bus: 0,
    address: 0,
    chipSelect: 0,
    register: 0,
    length: 0,
    iioDevice: "",
    config: { ...input.config },
    createdAt: now,
  };
  switch (input.kind) {
    case "digital":
    case "pwm":
      record.chip = input.chip;
      record.pin = checkIntIn("pin", input.pin, 0, 1023);
      break;
    case "analog":
      record.iioDevice = input.iioDevice;
      record.register = checkIntIn("register", input.register, 0, 63);
      break;
    case "i2c":
      record.bus = checkBus(input.bus);
      record.address = checkI2cAddress(input.address);
      record.register = checkI2cRegister(input.register);
      record.length = checkI2cLength(input.length === 0 ? 1 : input.length);
      break;
    case "spi":
      record.bus = checkBus(input.bus);
      record.chipSelect = checkIntIn("chip_select", input.chipSelect, 0, hardwareLimits.maxChipSelect);
      record.length = checkIntIn(
        "length",
        input.length === 0 ? 2 : input.length,
        1,
        hardwareLimits.spiMaxBytes,
      );
      spiReadBytes(record);
      break;
  }
  return record;
}

/**
 * The bytes an SPI device is sent to read it: config "spi_read" (hex), else `length` zero bytes.
 * INVALID_ARGUMENT for bad hex.
 */
export function spiReadBytes(device: DeviceRecord): Uint8Array {
  const hex = (device.config.spi_read ?? "").replace(/\s+/g, "");
  if (hex === "") return new Uint8Array(device.length);
  if (!/^([0-9a-fA-F]{2})+$/.test(hex) || hex.length / 2 > hardwareLimits.spiMaxBytes) {
    throw CorralError.invalidArgument("config", `spi_read: "${device.config.spi_read}" is not hex bytes`);
  }
  return Uint8Array.from(Buffer.from(hex, "hex"));
}

/** A number from config (`spi_speed_hz`, `pwm_frequency_hz`), or the fallback. */
export function configNumber(device: DeviceRecord, key: string, fallback: number): number {
  const text = device.config[key];
  if (text === undefined || text.trim() === "") return fallback;
  const value = Number(text);
  if (!Number.isFinite(value))
    throw CorralError.invalidArgument("config", `${key}: "${text}" is not a number`);
  return value;
}

/** Bytes as one big-endian unsigned number (the first 6 bytes: exact in a double). */
export function bytesValue(bytes: Uint8Array): number {
  let value = 0;
  for (const byte of bytes.subarray(0, 6)) value = value * 256 + byte;
  return value;
}

export function encodeDevice(device: DeviceRecord): string {
  return JSON.stringify(device);
}

export function decodeDevice(text: string, key: string): DeviceRecord {
  try {
    const value = JSON.parse(text) as DeviceRecord;
    if (typeof value.name !== "string" || !deviceKinds.includes(value.kind)) throw new Error("not a device");
    return { ...value, config: value.config ?? {} };
  } catch (error) {
    throw new CorralError(ErrorCode.Internal, `the store holds a malformed device at ${key}`, {
      cause: error,
    });
  }
}

export function deviceNotFound(name: string): CorralError {
  return new CorralError(ErrorCode.NotFound, `no device named "${name}"`, { details: { name } });
}
