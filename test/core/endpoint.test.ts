import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { CorralError, ErrorCode } from "../../src/base/errors.ts";
import { formatEndpoint, parseEndpoint } from "../../src/core/nodes/endpoint.ts";

function refuses(address: unknown, port: unknown, field: string): void {
  assert.throws(
    () => parseEndpoint(address, port),
    (error: unknown) =>
      error instanceof CorralError &&
      error.code === ErrorCode.InvalidArgument &&
      error.message.startsWith(`${field}:`),
    `${String(address)} / ${String(port)}`,
  );
}

describe("node endpoints", () => {
  it("accepts host:port, [v6]:port, and a bare host with a port beside it", () => {
    assert.deepEqual(parseEndpoint("127.0.0.1:10432", undefined), { address: "127.0.0.1", port: 10432 });
    assert.deepEqual(parseEndpoint("agent-1.local", 8080), { address: "agent-1.local", port: 8080 });
    assert.deepEqual(parseEndpoint("[::1]:9000", undefined), { address: "::1", port: 9000 });
    assert.deepEqual(parseEndpoint("fe80::1", 9000), { address: "fe80::1", port: 9000 });
    assert.deepEqual(parseEndpoint("host", undefined, 7000), { address: "host", port: 7000 });
    assert.deepEqual(parseEndpoint(undefined, undefined), { address: "", port: 0 });
  });

  it("refuses what cannot be dialed, naming the field", () => {
    refuses("host", undefined, "address");
    refuses("bad host!:80", undefined, "address");
    refuses("host:99999", undefined, "port");
    refuses("host:80", 81, "port");
    refuses("host:http", undefined, "address");
    refuses("[::1", undefined, "address");
    refuses("", 80, "address");
    refuses(42, undefined, "address");
  });

  it("formats IPv6 hosts in brackets", () => {
    assert.equal(formatEndpoint({ address: "::1", port: 1 }), "[::1]:1");
    assert.equal(formatEndpoint({ address: "a", port: 2 }), "a:2");
    assert.equal(formatEndpoint({ address: "", port: 0 }), "");
  });
});
