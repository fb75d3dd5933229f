import { CorralError, ErrorCode } from "../../base/errors.ts";
import {
  busBusy,
  checkBus,
  checkI2cAddress,
  checkI2cData,
  checkI2cLength,
  checkI2cRegister,
} from "../../core/devices/device-limits.ts";
import { LineLocks } from "./gpio/gpio-backend.ts";

export type I2cBackendKind = "i2c-dev" | "simulated";

/**
 * I²C buses of a node. Every method checks bus, address (0x03..0x77), register (0..0xff), length and data
 * (1..32 bytes) → INVALID_ARGUMENT; a bus or address another user holds → FAILED_PRECONDITION; a device
 * that does not answer → UNAVAILABLE. Calls on one bus run one at a time.
 */
export interface I2cBackend {
  readonly kind: I2cBackendKind;
  /** Bus numbers (/dev/i2c-N). */
  readonly buses: readonly number[];
  read(bus: number, address: number, length: number): Promise<Uint8Array>;
  write(bus: number, address: number, data: Uint8Array): Promise<number>;
  readRegister(bus: number, address: number, register: number, length: number): Promise<Uint8Array>;
  writeRegister(bus: number, address: number, register: number, data: Uint8Array): Promise<number>;
  probe(): Promise<string>;
  close(): Promise<void>;
}

export function checkKnownBus(buses: readonly number[], bus: number, what: string): number {
  checkBus(bus);
  if (!buses.includes(bus)) {
    throw new CorralError(
      ErrorCode.InvalidArgument,
      `bus: no ${what} bus ${bus} on this node; buses: ${buses.join(", ") || "none"}`,
      { details: { field: "bus", buses: buses.join(",") } },
    );
  }
  return bus;
}

/** Arguments of an I²C call, checked. */
export const i2cArgs = {
  read(buses: readonly number[], bus: number, address: number, length: number): void {
    checkKnownBus(buses, bus, "I²C");
    checkI2cAddress(address);
    checkI2cLength(length);
  },
  write(buses: readonly number[], bus: number, address: number, data: Uint8Array): void {
    checkKnownBus(buses, bus, "I²C");
    checkI2cAddress(address);
    checkI2cData(data);
  },
  readRegister(
    buses: readonly number[],
    bus: number,
    address: number,
    register: number,
    length: number,
  ): void {
    i2cArgs.read(buses, bus, address, length);
    checkI2cRegister(register);
  },
  writeRegister(
    buses: readonly number[],
    bus: number,
    address: number,
    register: number,
    data: Uint8Array,
  ): void {
    i2cArgs.write(buses, bus, address, data);
    checkI2cRegister(register);
  },
};

export interface SimulatedI2cDevice {
  bus: number;
  address: number;
  /** Initial register contents (256 registers); default: register r holds r. */
  registers?: Uint8Array;
}

const hex = (n: number) => `0x${n.toString(16).padStart(2, "0")}`;

/**
 * Simulated I²C buses with register devices that behave like common sensors and EEPROMs: a plain write
 * sets the register pointer to its first byte and stores the rest from there; a plain read reads from the
 * pointer; both advance it (wrapping at 0xff). An address with no device NACKs (UNAVAILABLE, as the
 * kernel's EREMOTEIO); `hold` marks an address as taken by a kernel driver (FAILED_PRECONDITION, EBUSY).
 */
export class SimulatedI2c implements I2cBackend {
  readonly kind = "simulated" as const;
  readonly buses: readonly number[];
  readonly #devices = new Map<string, { registers: Uint8Array; pointer: number }>();
  readonly #held = new Map<string, string>();
  readonly #locks = new LineLocks();

  constructor(options: { buses?: readonly number[]; devices?: readonly SimulatedI2cDevice[] } = {}) {
    this.buses = [...(options.buses ?? [1])];
    const devices = options.devices ?? [{ bus: this.buses[0] ?? 1, address: 0x48 }];
    for (const device of devices) {
      const registers = new Uint8Array(256);
      if (device.registers === undefined) for (let r = 0; r < 256; r++) registers[r] = r;
      else registers.set(device.registers.subarray(0, 256));
      this.#devices.set(`${device.bus}:${device.address}`, { registers, pointer: 0 });
    }
  }

  /** Marks an address as bound to another driver, for tests. */
  hold(bus: number, address: number, by: string): void {
    this.#held.set(`${bus}:${address}`, by);
  }

  release(bus: number, address: number): void {
    this.#held.delete(`${bus}:${address}`);
  }

  async read(bus: number, address: number, length: number): Promise<Uint8Array> {
    i2cArgs.read(this.buses, bus, address, length);
    return this.#on(bus, address, (device) => this.#take(device, length));
  }

  async write(bus: number, address: number, data: Uint8Array): Promise<number> {
    i2cArgs.write(this.buses, bus, address, data);
    return this.#on(bus, address, (device) => {
      device.pointer = data[0] ?? 0;
      this.#put(device, data.subarray(1));
      return data.length;
    });
  }

  async readRegister(bus: number, address: number, register: number, length: number): Promise<Uint8Array> {
    i2cArgs.readRegister(this.buses, bus, address, register, length);
    return this.#on(bus, address, (device) => {
      device.pointer = register;
      return this.#take(device, length);
    });
  }

  async writeRegister(bus: number, address: number, register: number, data: Uint8Array): Promise<number> {
    i2cArgs.writeRegister(this.buses, bus, address, register, data);
    return this.#on(bus, address, (device) => {
      device.pointer = register;
      this.#put(device, data);
      return data.length;
    });
  }

  async probe(): Promise<string> {
    const devices = [...this.#devices.keys()].map((key) => {
      const [bus, address] = key.split(":").map(Number);
      return `${hex(address ?? 0)} on bus ${bus}`;
    });
    return `simulated I²C: buses ${this.buses.join(", ")}; devices ${devices.join(", ")}`;
  }

  async close(): Promise<void> {}

  #on<T>(
    bus: number,
    address: number,
    task: (device: { registers: Uint8Array; pointer: number }) => T,
  ): Promise<T> {
    return this.#locks.run(String(bus), async () => {
      const by = this.#held.get(`${bus}:${address}`);
      if (by !== undefined) throw busBusy(`/dev/i2c-${bus} address ${hex(address)}`, by);
      const device = this.#devices.get(`${bus}:${address}`);
      if (device === undefined) {
        throw new CorralError(
          ErrorCode.Unavailable,
          `/dev/i2c-${bus}: no device answers at ${hex(address)} (Remote I/O error)`,
          { details: { bus: String(bus), address: hex(address) } },
        );
      }
      return task(device);
    });
  }

  #take(device: { registers: Uint8Array; pointer: number }, length: number): Uint8Array {
    const out = new Uint8Array(length);
    for (let i = 0; i < length; i++) {
      out[i] = device.registers[device.pointer] ?? 0;
      device.pointer = (device.pointer + 1) & 0xff;
    }
    return out;
  }

  #put(device: { registers: Uint8Array; pointer: number }, data: Uint8Array): void {
    for (const byte of data) {
      device.registers[device.pointer] = byte;
      device.pointer = (device.pointer + 1) & 0xff;
    }
  }
}
