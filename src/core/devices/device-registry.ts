import type { Clock } from "../../base/clock.ts";
import { CorralError, ErrorCode } from "../../base/errors.ts";
import type { Store } from "../../store/store.ts";
import {
  buildDeviceRecord,
  type DeviceInput,
  type DeviceRecord,
  decodeDevice,
  deviceKey,
  deviceKeyPrefix,
  deviceNotFound,
  encodeDevice,
} from "./device.ts";

/** Named devices, kept in the store (SQLite or etcd alike): one key per device, names unique. */
export class DeviceRegistry {
  readonly #store: Store;
  readonly #clock: Clock;

  constructor(store: Store, clock: Clock) {
    this.#store = store;
    this.#clock = clock;
  }

  async add(input: DeviceInput): Promise<DeviceRecord> {
    const device = buildDeviceRecord(input, this.#clock.now());
    const key = deviceKey(device.name);
    const result = await this.#store.commit({
      compares: [{ key, modRevision: 0 }],
      ops: [{ type: "put", key, value: encodeDevice(device) }],
    });
    if (!result.succeeded) {
      throw new CorralError(ErrorCode.AlreadyExists, `a device named "${device.name}" already exists`, {
        details: { name: device.name },
      });
    }
    return device;
  }

  async get(name: string): Promise<DeviceRecord> {
    if (name.trim() === "") throw CorralError.invalidArgument("name", "give a device name");
    const kv = await this.#store.get(deviceKey(name));
    if (kv === undefined) throw deviceNotFound(name);
    return decodeDevice(kv.value, kv.key);
  }

  /** Every device, by name; with `nodeId`, only that node's. */
  async list(nodeId?: string): Promise<DeviceRecord[]> {
    const { items } = await this.#store.list(deviceKeyPrefix);
    const devices = items.map((kv) => decodeDevice(kv.value, kv.key));
    return nodeId === undefined ? devices : devices.filter((device) => device.nodeId === nodeId);
  }

  async remove(name: string): Promise<DeviceRecord> {
    const kv = await this.#store.get(deviceKey(name));
    if (kv === undefined) throw deviceNotFound(name);
    const result = await this.#store.commit({
      compares: [{ key: kv.key, modRevision: kv.modRevision }],
      ops: [{ type: "delete", key: kv.key }],
    });
    if (!result.succeeded)
      throw new CorralError(ErrorCode.Aborted, `device "${name}" changed meanwhile; try again`);
    return decodeDevice(kv.value, kv.key);
  }
}
