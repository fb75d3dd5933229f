import { CorralError, ErrorCode } from "../../base/errors.ts";
import { busBusy, checkSpi, deviceFailure, hardwareLimits } from "../../core/devices/device-limits.ts";
import { LineLocks } from "./gpio/gpio-backend.ts";
import { checkKnownBus } from "./i2c-backend.ts";

export type SpiBackendKind = "spidev" | "simulated";

export interface SpiTransfer {
  bus: number;
  chipSelect: number;
  data: Uint8Array;
  /** 0: the default speed. */
  speedHz: number;
  mode: number;
}

/**
 * SPI devices of a node (/dev/spidevB.C). `transfer` is full duplex: it answers as many bytes as it
 * sends. Checked: a known bus and chip select, 1..4096 bytes, speed ≤ 125 MHz, mode 0..3
 * (INVALID_ARGUMENT); a device in use → FAILED_PRECONDITION. Transfers on one device run one at a time.
 */
export interface SpiBackend {
  readonly kind: SpiBackendKind;
  /** "B.C" for each /dev/spidevB.C. */
  readonly devices: readonly string[];
  transfer(request: SpiTransfer): Promise<Uint8Array>;
  probe(): Promise<string>;
  close(): Promise<void>;
}

export function checkSpiTransfer(devices: readonly string[], request: SpiTransfer): void {
  checkKnownBus([...new Set(devices.map((device) => Number(device.split(".")[0])))], request.bus, "SPI");
  checkSpi(request);
  if (!devices.includes(`${request.bus}.${request.chipSelect}`)) {
    throw new CorralError(
      ErrorCode.InvalidArgument,
      `chip_select: no /dev/spidev${request.bus}.${request.chipSelect} on this node; devices: ${devices.map((d) => `spidev${d}`).join(", ")}`,
      { details: { field: "chip_select" } },
    );
  }
}

/**
 * Simulated SPI with MISO wired to MOSI (the loopback test every SPI bring-up starts with): a transfer
 * answers the bytes it sent. `hold` marks a device as claimed by another process.
 */
export class SimulatedSpi implements SpiBackend {
  readonly kind = "simulated" as const;
  readonly devices: readonly string[];
  readonly #held = new Map<string, string>();
  readonly #locks = new LineLocks();

  constructor(devices: readonly string[] = ["0.0", "0.1"]) {
    this.devices = [...devices];
  }

  hold(bus: number, chipSelect: number, by: string): void {
    this.#held.set(`${bus}.${chipSelect}`, by);
  }

  release(bus: number, chipSelect: number): void {
    this.#held.delete(`${bus}.${chipSelect}`);
  }

  async transfer(request: SpiTransfer): Promise<Uint8Array> {
    checkSpiTransfer(this.devices, request);
    const key = `${request.bus}.${request.chipSelect}`;
    return this.#locks.run(key, async () => {
      const by = this.#held.get(key);
      if (by !== undefined) throw busBusy(`/dev/spidev${key}`, by);
      return new Uint8Array(request.data);
    });
  }

  async probe(): Promise<string> {
    return `simulated SPI (loopback): ${this.devices.map((d) => `spidev${d}`).join(", ")}`;
  }

  async close(): Promise<void> {}
}

/** The part of npm `spi-device` this driver uses. */
export interface SpiDeviceModule {
  open(
    bus: number,
    device: number,
    options: { mode?: 0 | 1 | 2 | 3; maxSpeedHz?: number },
    callback: (error: Error | null | undefined) => void,
  ): {
    transfer(
      message: { byteLength: number; sendBuffer?: Buffer; receiveBuffer?: Buffer; speedHz?: number }[],
      callback: (error: Error | null | undefined) => void,
    ): unknown;
    close(callback: (error: Error | null | undefined) => void): void;
  };
}

/**
 * SPI through the kernel's spidev driver with npm `spi-device` (SPI_IOC_MESSAGE). The device is opened
 * for each transfer, with its mode and speed, and closed after it.
 */
export class SpidevSpi implements SpiBackend {
  readonly kind = "spidev" as const;
  readonly devices: readonly string[];
  readonly #module: SpiDeviceModule;
  readonly #locks = new LineLocks();

  constructor(devices: readonly string[], module: SpiDeviceModule) {
    this.devices = [...devices];
    this.#module = module;
  }

  async transfer(request: SpiTransfer): Promise<Uint8Array> {
    checkSpiTransfer(this.devices, request);
    const key = `${request.bus}.${request.chipSelect}`;
    const what = `/dev/spidev${key}`;
    const speedHz = request.speedHz === 0 ? hardwareLimits.spiDefaultSpeedHz : request.speedHz;
    return this.#locks.run(key, async () => {
      let device: ReturnType<SpiDeviceModule["open"]> | undefined;
      try {
        device = await new Promise<ReturnType<SpiDeviceModule["open"]>>((resolve, reject) => {
          const opened = this.#module.open(
            request.bus,
            request.chipSelect,
            { mode: request.mode as 0 | 1 | 2 | 3, maxSpeedHz: speedHz },
            (error) => (error ? reject(error) : resolve(opened)),
          );
        });
        const receive = Buffer.alloc(request.data.length);
        const opened = device;
        await new Promise<void>((resolve, reject) => {
          opened.transfer(
            [
              {
                byteLength: request.data.length,
                sendBuffer: Buffer.from(request.data),
                receiveBuffer: receive,
                speedHz,
              },
            ],
            (error) => (error ? reject(error) : resolve()),
          );
        });
        return new Uint8Array(receive);
      } catch (error) {
        throw deviceFailure(what, error);
      } finally {
        const opened = device;
        if (opened !== undefined) await new Promise<void>((resolve) => opened.close(() => resolve()));
      }
    });
  }

  async probe(): Promise<string> {
    return `spidev: ${this.devices.map((d) => `/dev/spidev${d}`).join(", ")}`;
  }

  async close(): Promise<void> {}
}
