import { CorralError, ErrorCode } from "../../base/errors.ts";
import { bytesValue } from "../../core/devices/device.ts";
import { checkSampleRate } from "../../core/devices/device-limits.ts";
import { SimulatedAnalog } from "./analog.ts";
import type { Hardware } from "./hardware.ts";

/** What to sample, as HardwareService's SampleSource names it. */
export type SampleSourceSpec =
  | { kind: "pin"; chip: string; pin: number }
  | { kind: "analog"; device: string; channel: number }
  | { kind: "i2c"; bus: number; address: number; register: number; length: number }
  | { kind: "spi"; bus: number; chipSelect: number; data: Uint8Array; speedHz: number; mode: number }
  | { kind: "pwm"; chip: string; pin: number };

export interface SampleValue {
  value: number;
  raw: Uint8Array;
}

export interface SampleRecord extends SampleValue {
  seq: number;
  /** ms since the epoch: when the sample was due. */
  at: number;
}

function int32Bytes(value: number): Uint8Array {
  const bytes = new Uint8Array(4);
  new DataView(bytes.buffer).setInt32(0, Math.trunc(value));
  return bytes;
}

/**
 * A reader of one source, checked once up front. `at` is when the sample is due: the simulated ADC gives
 * the waveform's value at that instant, so samples are evenly spaced even when the loop runs late.
 */
export function sourceReader(
  hardware: Hardware,
  source: SampleSourceSpec,
): (at: number) => Promise<SampleValue> {
  switch (source.kind) {
    case "pin":
      return async () => {
        const level = await hardware.gpio.read(source.pin, source.chip || undefined);
        return { value: level, raw: Uint8Array.of(level) };
      };
    case "analog": {
      const analog = hardware.analog;
      if (analog instanceof SimulatedAnalog) {
        return async (at) => {
          const { value, raw } = await analog
            .read(source.device, source.channel)
            .then(() => analog.valueAt(source.channel, at));
          return { value, raw: int32Bytes(raw) };
        };
      }
      return async () => {
        const { value, raw } = await analog.read(source.device, source.channel);
        return { value, raw: int32Bytes(raw) };
      };
    }
    case "i2c":
      return async () => {
        const raw = await hardware.i2c.readRegister(
          source.bus,
          source.address,
          source.register,
          source.length,
        );
        return { value: bytesValue(raw), raw };
      };
    case "spi":
      return async () => {
        const raw = await hardware.spi.transfer(source);
        return { value: bytesValue(raw), raw };
      };
    case "pwm":
      return async () => {
        const state = await hardware.pwm.get(source.pin, source.chip || undefined);
        return { value: state.enabled ? state.dutyCycle : 0, raw: new Uint8Array() };
      };
  }
}

export interface SampleStreamOptions {
  read: (at: number) => Promise<SampleValue>;
  rateHz: number;
  /** 0: until cancelled. */
  maxSamples: number;
  signal: AbortSignal;
  /** Samples waiting for a slow reader before it is dropped with RESOURCE_EXHAUSTED. */
  maxPending: number;
  /** At most this many samples per batch. */
  maxBatch: number;
  /**
   * A batch waits up to this long for more samples (0: none): at high rates one message per sample
   * would cost more than the samples. Slow rates are not delayed: a batch goes once its first sample
   * has waited this long, or at once when the previous batch left longer ago than this.
   */
  flushMs?: number;
}

/**
 * Samples `read` at `rateHz` on a timer (not driven by the reader), yielding what is due in batches. A
 * reader that leaves more than `maxPending` samples waiting is dropped: the stream ends with
 * RESOURCE_EXHAUSTED instead of buffering without bound. A loop that falls more than half a second
 * behind (a slow source) skips ahead: the gap shows in `seq`.
 */
export async function* sampleStream(options: SampleStreamOptions): AsyncGenerator<SampleRecord[]> {
  const rateHz = checkSampleRate(options.rateHz);
  const intervalMs = 1000 / rateHz;
  const skipAfter = Math.max(1, Math.ceil(rateHz / 2));
  const queue: SampleRecord[] = [];
  const start = Date.now();
  let seq = 0;
  let failure: unknown;
  let done = false;
  let timer: NodeJS.Timeout | undefined;
  let wake: (() => void) | undefined;
  const notify = () => {
    const resolve = wake;
    wake = undefined;
    resolve?.();
  };
  const stop = () => {
    done = true;
    clearTimeout(timer);
    notify();
  };
  const tick = async () => {
    timer = undefined;
    try {
      const due = Math.floor((Date.now() - start) / intervalMs) + 1;
      if (due - seq > skipAfter) seq = due - 1;
      while (seq < due && !done) {
        seq++;
        const at = start + (seq - 1) * intervalMs;
        queue.push({ seq, at, ...(await options.read(at)) });
        if (options.maxSamples > 0 && seq >= options.maxSamples) done = true;
      }
      if (queue.length > options.maxPending && !done) {
        failure = new CorralError(
          ErrorCode.ResourceExhausted,
          `the reader fell more than ${options.maxPending} samples behind at ${rateHz}/s; it was dropped`,
          { details: { maxPending: String(options.maxPending) } },
        );
        done = true;
      }
    } catch (error) {
      failure = error;
      done = true;
    }
    notify();
    if (!done) {
      timer = setTimeout(() => void tick(), Math.max(0, start + seq * intervalMs - Date.now()));
    }
  };
  options.signal.addEventListener("abort", stop, { once: true });
  try {
    void tick();
    const flushMs = options.flushMs ?? 0;
    let lastYield = Number.NEGATIVE_INFINITY;
    for (;;) {
      if (failure instanceof CorralError && failure.code === ErrorCode.ResourceExhausted) throw failure;
      if (queue.length > 0) {
        const wait = lastYield + flushMs - Date.now();
        if (wait > 0 && queue.length < options.maxBatch && !done) {
          await new Promise<void>((resolve) => {
            const flush = setTimeout(() => {
              wake = undefined;
              resolve();
            }, wait);
            // New samples: go on waiting unless the batch is full or the stream ended.
            const check = () => {
              if (queue.length >= options.maxBatch || done) {
                clearTimeout(flush);
                resolve();
              } else {
                wake = check;
              }
            };
            wake = check;
          });
          wake = undefined;
          continue;
        }
        lastYield = Date.now();
        yield queue.splice(0, options.maxBatch);
        continue;
      }
      if (failure !== undefined) throw failure;
      if (done) return;
      await new Promise<void>((resolve) => {
        wake = resolve;
      });
    }
  } finally {
    options.signal.removeEventListener("abort", stop);
    done = true;
    clearTimeout(timer);
  }
}
