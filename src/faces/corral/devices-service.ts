import { create } from "@bufbuild/protobuf";
import { timestampFromMs } from "@bufbuild/protobuf/wkt";
import type { ServiceImpl } from "@connectrpc/connect";
import type { Clock } from "../../base/clock.ts";
import { CorralError, ErrorCode } from "../../base/errors.ts";
import { bytesValue, configNumber, type DeviceRecord } from "../../core/devices/device.ts";
import type { DeviceRegistry } from "../../core/devices/device-registry.ts";
import type { NodeRegistry } from "../../core/nodes/node-registry.ts";
import { defaults } from "../../defaults.ts";
import {
  type Device,
  DeviceSchema,
  type DevicesService,
  type Reading,
  ReadingSchema,
  type WatchReadingsResponse,
  WatchReadingsResponseSchema,
} from "../../gen/corral/v1/devices_pb.ts";
import {
  HardwareService,
  I2cWriteRegisterRequestSchema,
  SampleInputRequestSchema,
  SampleSourceSchema,
  SetPwmRequestSchema,
  SpiTransferRequestSchema,
  WritePinRequestSchema,
} from "../../gen/corral/v1/hardware_pb.ts";
import { preciseTimestamp } from "../../wire/precise-timestamp.ts";
import type { ClusterFacts } from "../face-context.ts";
import { type RelayDeps, relayToNode } from "../node-relay.ts";
import { drainBounded } from "./bounded-drain.ts";
import {
  defaultPwmHz,
  type HardwareCalls,
  kindFromEnum,
  kindToEnum,
  readOnce,
  sampleSourceOf,
  spiRequest,
  withSignal,
} from "./device-hardware.ts";

/**
 * corral.v1.HardwareService on the controller: each call runs on the node its `node_id` names (id or
 * name; empty: the controller's own node), here or relayed to that node's agent.
 */
export function hardwareRelay(
  deps: RelayDeps & { readonly localHardware?: Partial<ServiceImpl<typeof HardwareService>> },
): Partial<ServiceImpl<typeof HardwareService>> {
  return relayToNode(HardwareService, deps, deps.localHardware ?? {}, (request) =>
    ((request as { nodeId?: string }).nodeId ?? "").trim(),
  );
}

/** What the devices face touches: the device registry, the hardware calls (relayed), node names. */
export interface DevicesServiceDeps {
  readonly devices: DeviceRegistry;
  /** corral.v1.HardwareService as the controller serves it: here or relayed to the device's node. */
  readonly hardware: Partial<ServiceImpl<typeof HardwareService>>;
  readonly registry: Pick<NodeRegistry, "get">;
  readonly facts: Pick<ClusterFacts, "controllerNodeId">;
  readonly clock: Clock;
}

/**
 * corral.v1.DevicesService: named devices kept in the store, read, written and sampled through the
 * HardwareService of the node each is on (here for the controller's own node, relayed otherwise).
 */
export function devicesService(
  deps: DevicesServiceDeps,
  options: { maxPending?: number } = {},
): ServiceImpl<typeof DevicesService> {
  const { devices, registry, facts, clock } = deps;
  const hardware = deps.hardware as unknown as HardwareCalls;
  const maxPending = options.maxPending ?? defaults.agentHardware.streamMaxPending;

  const nodeName = async (nodeId: string) => {
    try {
      return (await registry.get(nodeId)).name;
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
    at = clock.now(),
  ): Reading =>
    create(ReadingSchema, {
      device: device.name,
      seq,
      time: preciseTimestamp(at),
      value,
      raw,
      unit: device.config.unit ?? "",
    });

  return {
    async listDevices(request) {
      const filter = request.nodeId.trim();
      const nodeId = filter === "" ? undefined : (await registry.get(filter)).id;
      const list = await devices.list(nodeId);
      return { devices: await Promise.all(list.map(message)) };
    },

    async getDevice(request) {
      return { device: await message(await devices.get(request.name)) };
    },

    async addDevice(request) {
      const input = request.device;
      if (input === undefined) throw CorralError.invalidArgument("device", "is required");
      const target = input.nodeId.trim() === "" ? facts.controllerNodeId : input.nodeId.trim();
      const node = await registry.get(target);
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
      return { reading: await readOnce(hardware, await devices.get(request.name), ctx, reading) };
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
          return { reading: await readOnce(hardware, device, ctx, reading) };
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
      const upstreamAbort = new AbortController();
      const onAbort = () => upstreamAbort.abort();
      ctx.signal.addEventListener("abort", onAbort);
      const upstream = hardware.sampleInput(
        create(SampleInputRequestSchema, {
          nodeId: device.nodeId,
          source: create(SampleSourceSchema, { source: sampleSourceOf(device) }),
          rateHz: request.rateHz,
          maxSamples: request.maxReadings,
        }),
        withSignal(ctx, upstreamAbort.signal),
      );
      const batches = (async function* () {
        for await (const batch of upstream) {
          yield batch.samples.map((sample) =>
            reading(
              device,
              sample.seq,
              sample.value,
              sample.raw,
              sample.time === undefined
                ? clock.now()
                : Number(sample.time.seconds) * 1000 + sample.time.nanos / 1e6,
            ),
          );
        }
      })();
      try {
        for await (const readings of drainBounded({
          upstream: batches,
          upstreamAbort,
          signal: ctx.signal,
          maxPending,
          maxBatch: defaults.agentHardware.sampleMaxBatch,
          overflow: () =>
            new CorralError(
              ErrorCode.ResourceExhausted,
              `the reader of "${device.name}" fell more than ${maxPending} readings behind; it was dropped`,
              { details: { maxPending: String(maxPending) } },
            ),
        })) {
          yield create(WatchReadingsResponseSchema, { readings });
        }
      } finally {
        ctx.signal.removeEventListener("abort", onAbort);
      }
    },
  };
}
