import { createRequire } from "node:module";
import { deviceFailure } from "../../core/devices/device-limits.ts";
import { LineLocks } from "./gpio/gpio-backend.ts";
import { type I2cBackend, i2cArgs } from "./i2c-backend.ts";

/** The part of npm `i2c-bus`'s PromisifiedBus this driver uses. */
interface PromisifiedBus {
  i2cRead(address: number, length: number, buffer: Buffer): Promise<{ bytesRead: number; buffer: Buffer }>;
  i2cWrite(
    address: number,
    length: number,
    buffer: Buffer,
  ): Promise<{ bytesWritten: number; buffer: Buffer }>;
  readI2cBlock(
    address: number,
    command: number,
    length: number,
    buffer: Buffer,
  ): Promise<{ bytesRead: number; buffer: Buffer }>;
  writeI2cBlock(
    address: number,
    command: number,
    length: number,
    buffer: Buffer,
  ): Promise<{ bytesWritten: number; buffer: Buffer }>;
  close(): Promise<void>;
}

interface I2cBusModule {
  openPromisified(bus: number, options?: { forceAccess?: boolean }): Promise<PromisifiedBus>;
}

/** Loads the native `i2c-bus` binding (only on nodes that have an I²C bus). */
export function loadI2cBus(): I2cBusModule {
  return createRequire(import.meta.url)("i2c-bus") as I2cBusModule;
}

/**
 * I²C through the kernel's i2c-dev interface (/dev/i2c-N) with npm `i2c-bus`: plain reads and writes are
 * I2C_RDWR-style transfers, register access is SMBus block read/write. The bus is opened for each call and
 * closed after, so no file descriptor outlives a request; an address a kernel driver owns gives EBUSY
 * (FAILED_PRECONDITION) since this driver never forces access.
 */
export class I2cDevBus implements I2cBackend {
  readonly kind = "i2c-dev" as const;
  readonly buses: readonly number[];
  readonly #module: I2cBusModule;
  readonly #locks = new LineLocks();

  constructor(buses: readonly number[], module: I2cBusModule = loadI2cBus()) {
    this.buses = [...buses];
    this.#module = module;
  }

  async read(bus: number, address: number, length: number): Promise<Uint8Array> {
    i2cArgs.read(this.buses, bus, address, length);
    return this.#on(bus, async (open) => {
      const result = await open.i2cRead(address, length, Buffer.alloc(length));
      return new Uint8Array(result.buffer.subarray(0, result.bytesRead));
    });
  }

  async write(bus: number, address: number, data: Uint8Array): Promise<number> {
    i2cArgs.write(this.buses, bus, address, data);
    return this.#on(
      bus,
      async (open) => (await open.i2cWrite(address, data.length, Buffer.from(data))).bytesWritten,
    );
  }

  async readRegister(bus: number, address: number, register: number, length: number): Promise<Uint8Array> {
    i2cArgs.readRegister(this.buses, bus, address, register, length);
    return this.#on(bus, async (open) => {
      const result = await open.readI2cBlock(address, register, length, Buffer.alloc(length));
      return new Uint8Array(result.buffer.subarray(0, result.bytesRead));
    });
  }

  async writeRegister(bus: number, address: number, register: number, data: Uint8Array): Promise<number> {
    i2cArgs.writeRegister(this.buses, bus, address, register, data);
    return this.#on(
      bus,
      async (open) =>
        (await open.writeI2cBlock(address, register, data.length, Buffer.from(data))).bytesWritten,
    );
  }

  async probe(): Promise<string> {
    return `i2c-dev: ${this.buses.map((bus) => `/dev/i2c-${bus}`).join(", ")}`;
  }

  async close(): Promise<void> {}

  #on<T>(bus: number, task: (open: PromisifiedBus) => Promise<T>): Promise<T> {
    const what = `/dev/i2c-${bus}`;
    return this.#locks.run(String(bus), async () => {
      let open: PromisifiedBus;
      try {
        open = await this.#module.openPromisified(bus);
      } catch (error) {
        throw deviceFailure(what, error);
      }
      try {
        return await task(open);
      } catch (error) {
        throw deviceFailure(what, error);
      } finally {
        await open.close().catch(() => undefined);
      }
    });
  }
}
