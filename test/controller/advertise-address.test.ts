import assert from "node:assert/strict";
import type { networkInterfaces } from "node:os";
import { describe, it } from "node:test";
import { CorralError } from "../../src/base/errors.ts";
import { chooseAdvertiseAddress } from "../../src/controller/advertise-address.ts";

type Interfaces = ReturnType<typeof networkInterfaces>;
const nic = (address: string, internal = false) =>
  ({ address, internal, family: address.includes(":") ? "IPv6" : "IPv4" }) as NonNullable<
    Interfaces[string]
  >[number];

describe("the address a controller advertises", () => {
  const wildcard = { host: "0.0.0.0", port: 7443 };

  it("is the configured one, else the bound host", () => {
    assert.deepEqual(
      chooseAdvertiseAddress({
        bind: wildcard,
        configured: { host: "ctl-1.example", port: 443 },
        withPeers: true,
      }),
      { host: "ctl-1.example", port: 443 },
    );
    assert.deepEqual(chooseAdvertiseAddress({ bind: { host: "10.0.0.5", port: 7443 }, withPeers: true }), {
      host: "10.0.0.5",
      port: 7443,
    });
  });

  it("is loopback for a lone controller that binds every interface", () => {
    assert.deepEqual(chooseAdvertiseAddress({ bind: wildcard, withPeers: false, interfaces: {} }), {
      host: "127.0.0.1",
      port: 7443,
    });
  });

  it("is the machine's one address beyond loopback when there are peers", () => {
    const interfaces: Interfaces = {
      lo: [nic("127.0.0.1", true), nic("::1", true)],
      eth0: [nic("10.0.0.7"), nic("fe80::1")],
    };
    assert.deepEqual(chooseAdvertiseAddress({ bind: wildcard, withPeers: true, interfaces }), {
      host: "10.0.0.7",
      port: 7443,
    });
  });

  it("must be configured when there are peers and the machine has several addresses, or none", () => {
    for (const interfaces of [
      { lo: [nic("127.0.0.1", true)] },
      { eth0: [nic("10.0.0.7")], eth1: [nic("192.168.1.4")] },
    ] as Interfaces[]) {
      assert.throws(
        () => chooseAdvertiseAddress({ bind: wildcard, withPeers: true, interfaces }),
        (e: unknown) =>
          e instanceof CorralError &&
          e.code === "INVALID_ARGUMENT" &&
          /http\.advertiseAddress/.test(e.message),
      );
    }
  });
});
