import assert from "node:assert/strict";
import { rm } from "node:fs/promises";
import { after, before, describe, it } from "node:test";
import { SimulatedGpio } from "../../src/agent/hardware/gpio/simulated-gpio.ts";
import { createHardware } from "../../src/agent/hardware/hardware.ts";
import { sampleStream } from "../../src/agent/hardware/sampler.ts";
import { hardwareService } from "../../src/agent/services/hardware-service.ts";
import type { Clock } from "../../src/base/clock.ts";
import { CorralError } from "../../src/base/errors.ts";
import { DeviceRegistry } from "../../src/core/devices/device-registry.ts";
import { EtcdStore } from "../../src/store/etcd/etcd-store.ts";
import { SqliteStore } from "../../src/store/sqlite/sqlite-store.ts";
import type { Store } from "../../src/store/store.ts";
import { etcdMissing, startTestEtcd, type TestEtcd } from "../helpers/etcd.ts";

const codeOf = (error: unknown) => (error instanceof CorralError ? error.code : String(error));

/** A HandlerContext with just what the hardware service reads. */
function handlerContext(signal: AbortSignal) {
  return { signal } as unknown as Parameters<ReturnType<typeof hardwareService>["watchPins"]>[1];
}

describe("bounded streams: a slow reader is dropped, never buffered without bound", () => {
  it("sampleStream: a reader that stops taking samples ends with RESOURCE_EXHAUSTED", async () => {
    const abort = new AbortController();
    let reads = 0;
    const stream = sampleStream({
      read: async () => {
        reads++;
        return { value: reads, raw: new Uint8Array() };
      },
      rateHz: 1000,
      maxSamples: 0,
      signal: abort.signal,
      maxPending: 50,
      maxBatch: 10,
    });
    const first = await stream.next();
    assert.equal(first.value?.[0]?.seq, 1);
    // The reader stalls: samples pile up past the bound while the timer keeps sampling.
    let caught: unknown;
    const deadline = Date.now() + 20_000;
    while (Date.now() < deadline && reads < 60) await new Promise((resolve) => setTimeout(resolve, 20));
    try {
      for (let i = 0; i < 100; i++) await stream.next();
    } catch (error) {
      caught = error;
    }
    assert.equal(codeOf(caught), "RESOURCE_EXHAUSTED");
    assert.match((caught as Error).message, /fell more than 50 samples behind/);
    const stopped = reads;
    await new Promise((resolve) => setTimeout(resolve, 50));
    assert.equal(reads, stopped, "the sampler stopped with the stream");
  });

  it("sampleStream: max_samples ends the stream; sequence numbers count from 1; abort ends it quietly", async () => {
    const abort = new AbortController();
    const seqs: number[] = [];
    for await (const batch of sampleStream({
      read: async () => ({ value: 0, raw: new Uint8Array() }),
      rateHz: 500,
      maxSamples: 25,
      signal: abort.signal,
      maxPending: 1000,
      maxBatch: 7,
    })) {
      assert.ok(batch.length <= 7);
      seqs.push(...batch.map((s) => s.seq));
    }
    assert.deepEqual(
      seqs,
      Array.from({ length: 25 }, (_, i) => i + 1),
    );
    const endless = sampleStream({
      read: async () => ({ value: 0, raw: new Uint8Array() }),
      rateHz: 10,
      maxSamples: 0,
      signal: abort.signal,
      maxPending: 1000,
      maxBatch: 7,
    });
    await endless.next();
    abort.abort();
    assert.equal((await endless.next()).done, true);
    let rate: unknown;
    try {
      await sampleStream({
        read: async () => ({ value: 0, raw: new Uint8Array() }),
        rateHz: 1001,
        maxSamples: 1,
        signal: abort.signal,
        maxPending: 1,
        maxBatch: 1,
      }).next();
    } catch (error) {
      rate = error;
    }
    assert.equal(codeOf(rate), "INVALID_ARGUMENT");
  });

  it("WatchPins: a watcher that stops reading while the line keeps changing is dropped", async () => {
    const gpio = await SimulatedGpio.open();
    const hardware = await createHardware({ gpio: { backend: gpio, kind: "simulated", reason: "test" } });
    const audits: string[] = [];
    const service = hardwareService({
      hardware,
      nodeId: () => "n1",
      audit: (e) => audits.push(e.action),
      maxPending: 16,
    });
    const abort = new AbortController();
    const stream = service.watchPins(
      { nodeId: "", chip: "", pins: [3], skipCurrent: false, edge: 0 } as never,
      handlerContext(abort.signal),
    ) as AsyncGenerator<{ event?: { level: number } }>;
    assert.equal((await stream.next()).value?.event?.level, 0);
    for (let i = 0; i < 40; i++) await gpio.write(3, (i % 2 === 0 ? 1 : 0) as 0 | 1);
    let caught: unknown;
    try {
      for (let i = 0; i < 100; i++) await stream.next();
    } catch (error) {
      caught = error;
    }
    assert.equal(codeOf(caught), "RESOURCE_EXHAUSTED");
    await service.writePin({ nodeId: "", chip: "", pin: 3, level: 1 } as never, handlerContext(abort.signal));
    assert.deepEqual(
      audits,
      ["gpio.write"],
      "a write through the service is audited; the backend's own writes are not calls",
    );
    await hardware.close();
  });
});

const etcdWhy = etcdMissing();
const fixedClock: Clock = { now: () => 1_700_000_000_000 };

for (const kind of ["sqlite", "etcd"] as const) {
  describe(`devices persisted through the store (${kind})`, () => {
    let etcd: TestEtcd | undefined;
    let open: () => Promise<Store>;
    let cleanup: () => Promise<void> = async () => {};
    before(async () => {
      if (kind === "sqlite") {
        const { mkdtemp } = await import("node:fs/promises");
        const { tmpdir } = await import("node:os");
        const dir = await mkdtemp(`${tmpdir()}/corral-devices-`);
        cleanup = () => rm(dir, { recursive: true, force: true });
        open = () => SqliteStore.open({ path: `${dir}/store.db` });
      } else if (etcdWhy === undefined) {
        etcd = await startTestEtcd();
        const endpoint = etcd.endpoint;
        open = () => EtcdStore.open({ endpoints: [endpoint], prefix: "/corral-devices-test" });
      }
    });
    after(async () => {
      await etcd?.stop();
      await cleanup();
    });

    it("add, list, get, remove; names unique; kept across a reopen", async (t) => {
      if (kind === "etcd" && etcdWhy !== undefined) return t.skip(etcdWhy);
      let store = await open();
      const devices = new DeviceRegistry(store, fixedClock);
      const base = {
        chip: "",
        pin: 0,
        bus: 0,
        address: 0,
        chipSelect: 0,
        register: 0,
        length: 0,
        iioDevice: "",
        config: {},
      };
      await devices.add({ ...base, name: "led", nodeId: "n1", kind: "digital", pin: 18 });
      await devices.add({
        ...base,
        name: "temp",
        nodeId: "n2",
        kind: "i2c",
        bus: 1,
        address: 0x48,
        config: { unit: "°C" },
      });
      let duplicate: unknown;
      try {
        await devices.add({ ...base, name: "led", nodeId: "n2", kind: "digital" });
      } catch (error) {
        duplicate = error;
      }
      assert.equal(codeOf(duplicate), "ALREADY_EXISTS");
      for (const bad of [
        { ...base, name: "Bad Name", nodeId: "n1", kind: "digital" as const },
        { ...base, name: "x", nodeId: "n1", kind: "i2c" as const, address: 0x78 },
        { ...base, name: "y", nodeId: "n1", kind: "spi" as const, config: { spi_read: "xyz" } },
      ]) {
        let caught: unknown;
        try {
          await devices.add(bad);
        } catch (error) {
          caught = error;
        }
        assert.equal(codeOf(caught), "INVALID_ARGUMENT", JSON.stringify(bad));
      }
      await store.close();
      store = await open();
      const reopened = new DeviceRegistry(store, fixedClock);
      assert.deepEqual(
        (await reopened.list()).map((d) => d.name),
        ["led", "temp"],
      );
      assert.deepEqual(
        (await reopened.list("n2")).map((d) => d.name),
        ["temp"],
      );
      const temp = await reopened.get("temp");
      assert.equal(temp.length, 1, "an I²C device reads one byte unless told");
      assert.equal(temp.config.unit, "°C");
      assert.equal(temp.createdAt, 1_700_000_000_000);
      await reopened.remove("led");
      let gone: unknown;
      try {
        await reopened.get("led");
      } catch (error) {
        gone = error;
      }
      assert.equal(codeOf(gone), "NOT_FOUND");
      await reopened.remove("temp");
      await store.close();
    });
  });
}
