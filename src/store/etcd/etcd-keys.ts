import type { IEvent, IKeyValue } from "etcd3";
import type { KeyValue, StoreEvent } from "../types.ts";

/** Maps store keys to etcd keys under one prefix, byte-wise, as etcd orders keys. */
export class KeySpace {
  readonly prefix: string;
  readonly #prefixBytes: Buffer;

  constructor(prefix: string) {
    this.prefix = prefix;
    this.#prefixBytes = Buffer.from(prefix, "utf8");
  }

  key(key: string): Buffer {
    return Buffer.from(this.prefix + key, "utf8");
  }

  /** The etcd range [key, rangeEnd) holding every store key that starts with `prefix`. */
  range(prefix: string): { key: Buffer; range_end: Buffer } {
    const start = this.key(prefix);
    return { key: start.length === 0 ? Buffer.from([0]) : start, range_end: rangeEnd(start) };
  }

  owns(etcdKey: Buffer, prefix = ""): boolean {
    const wanted = prefix === "" ? this.#prefixBytes : this.key(prefix);
    return etcdKey.length >= wanted.length && etcdKey.subarray(0, wanted.length).equals(wanted);
  }

  storeKey(etcdKey: Buffer): string {
    return etcdKey.subarray(this.#prefixBytes.length).toString("utf8");
  }

  keyValue(kv: IKeyValue): KeyValue {
    return {
      key: this.storeKey(kv.key),
      value: kv.value.toString("utf8"),
      createRevision: Number(kv.create_revision),
      modRevision: Number(kv.mod_revision),
      version: Number(kv.version),
    };
  }

  event(event: IEvent): StoreEvent {
    const revision = Number(event.kv.mod_revision);
    const key = this.storeKey(event.kv.key);
    const result: StoreEvent =
      event.type === "Put"
        ? { revision, type: "put", key, value: event.kv.value.toString("utf8") }
        : { revision, type: "delete", key };
    if (event.prev_kv) result.prevValue = event.prev_kv.value.toString("utf8");
    return result;
  }
}

/** etcd's prefix end: the key with its last byte below 0xff raised by one; "\0" (every key) if none. */
export function rangeEnd(start: Buffer): Buffer {
  const end = Buffer.from(start);
  for (let i = end.length - 1; i >= 0; i--) {
    const byte = end[i] as number;
    if (byte < 0xff) {
      end[i] = byte + 1;
      return end.subarray(0, i + 1);
    }
  }
  return Buffer.from([0]);
}

/** The smallest key after `key` in byte order. */
export function keyAfter(key: Buffer): Buffer {
  return Buffer.concat([key, Buffer.from([0])]);
}
