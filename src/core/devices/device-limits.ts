import { CorralError, ErrorCode } from "../../base/errors.ts";

/** The limits every hardware request is checked against, real or simulated alike. */
export const hardwareLimits = {
  /** /dev/i2c-N and /dev/spidevN.M numbers. */
  maxBus: 255,
  maxChipSelect: 255,
  /** 7-bit addresses; 0x00–0x02 and 0x78–0x7f are reserved by the I²C specification. */
  i2cAddress: { min: 0x03, max: 0x77 },
  i2cRegister: { min: 0x00, max: 0xff },
  /** SMBus block transfers carry at most 32 bytes. */
  i2cMaxBytes: 32,
  spiMaxBytes: 4096,
  spiMaxSpeedHz: 125_000_000,
  spiDefaultSpeedHz: 1_000_000,
  pwmHardwareHz: { min: 0.1, max: 50_000_000 },
  pwmSoftwareHz: { min: 0.1, max: 100 },
  /** Software PWM through the libgpiod tools restarts a gpioset per edge (tens of ms): slow blinking only. */
  pwmSoftwareToolsHz: { min: 0.1, max: 5 },
  sampleRateHz: { min: 0.1, max: 1000 },
} as const;

function outOfRange(field: string, value: number, min: number, max: number, hex = false): CorralError {
  const show = (n: number) => (hex ? `0x${n.toString(16).padStart(2, "0")}` : String(n));
  return new CorralError(
    ErrorCode.InvalidArgument,
    `${field}: ${show(value)} is out of range; valid: ${show(min)}..${show(max)}`,
    { details: { field, min: show(min), max: show(max) } },
  );
}

export function checkIntIn(field: string, value: number, min: number, max: number, hex = false): number {
  if (!Number.isInteger(value) || value < min || value > max) throw outOfRange(field, value, min, max, hex);
  return value;
}

export function checkBus(bus: number): number {
  return checkIntIn("bus", bus, 0, hardwareLimits.maxBus);
}

export function checkI2cAddress(address: number): number {
  const { min, max } = hardwareLimits.i2cAddress;
  return checkIntIn("address", address, min, max, true);
}

export function checkI2cRegister(register: number): number {
  const { min, max } = hardwareLimits.i2cRegister;
  return checkIntIn("register", register, min, max, true);
}

export function checkI2cLength(length: number): number {
  return checkIntIn("length", length, 1, hardwareLimits.i2cMaxBytes);
}

export function checkI2cData(data: Uint8Array): Uint8Array {
  checkIntIn("data", data.length, 1, hardwareLimits.i2cMaxBytes);
  return data;
}

export function checkSpi(request: {
  chipSelect: number;
  data: Uint8Array;
  speedHz: number;
  mode: number;
}): void {
  checkIntIn("chip_select", request.chipSelect, 0, hardwareLimits.maxChipSelect);
  if (request.data.length < 1 || request.data.length > hardwareLimits.spiMaxBytes) {
    throw outOfRange("data", request.data.length, 1, hardwareLimits.spiMaxBytes);
  }
  checkIntIn("speed_hz", request.speedHz, 0, hardwareLimits.spiMaxSpeedHz);
  checkIntIn("mode", request.mode, 0, 3);
}

export function checkFraction(field: string, value: number): number {
  if (!Number.isFinite(value) || value < 0 || value > 1) {
    throw new CorralError(ErrorCode.InvalidArgument, `${field}: ${value} is not in 0..1`, {
      details: { field, min: "0", max: "1" },
    });
  }
  return value;
}

export function checkRange(field: string, value: number, range: { min: number; max: number }): number {
  if (!Number.isFinite(value) || value < range.min || value > range.max) {
    throw new CorralError(
      ErrorCode.InvalidArgument,
      `${field}: ${value} is out of range; valid: ${range.min}..${range.max}`,
      { details: { field, min: String(range.min), max: String(range.max) } },
    );
  }
  return value;
}

export function checkSampleRate(rateHz: number): number {
  return checkRange("rate_hz", rateHz, hardwareLimits.sampleRateHz);
}

/** The error for a bus or device another user (a kernel driver, another process) holds. */
export function busBusy(what: string, by?: string): CorralError {
  return new CorralError(
    ErrorCode.FailedPrecondition,
    `${what} is busy${by === undefined ? "" : `: in use by ${by}`}`,
    { details: { device: what } },
  );
}

/** A system call's failure on a device node, as the CorralError a caller can act on. */
export function deviceFailure(what: string, error: unknown): CorralError {
  if (error instanceof CorralError) return error;
  const code = (error as NodeJS.ErrnoException | undefined)?.code;
  const message = error instanceof Error ? error.message : String(error);
  switch (code) {
    case "EBUSY":
      return busBusy(what, "a kernel driver or another process");
    case "EACCES":
    case "EPERM":
      return new CorralError(ErrorCode.FailedPrecondition, `${what}: permission denied (${message})`);
    case "ENOENT":
    case "ENODEV":
    case "ENXIO":
      return new CorralError(ErrorCode.Unavailable, `${what}: no such device (${message})`);
    case "EREMOTEIO":
    case "EIO":
      return new CorralError(ErrorCode.Unavailable, `${what}: no answer from the device (${message})`);
    case "EINVAL":
      return new CorralError(
        ErrorCode.InvalidArgument,
        `${what}: the device refused the request (${message})`,
      );
    default:
      return new CorralError(ErrorCode.Unavailable, `${what}: ${message}`, { cause: error });
  }
}
