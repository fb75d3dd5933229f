import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { CorralError } from "../../src/base/errors.ts";
import { resolveControllerConfig } from "../../src/controller/config.ts";

const rejectsWith = (raw: unknown, pattern: RegExp, overrides = {}) =>
  assert.throws(
    () => resolveControllerConfig(raw, "/tmp", overrides),
    (error: unknown) =>
      error instanceof CorralError && error.code === "INVALID_ARGUMENT" && pattern.test(error.message),
  );

describe("controller config", () => {
  it("reads NanoPing's controller file as printed in its guide", () => {
    const config = resolveControllerConfig(
      {
        node: { name: "My Controller" },
        http: { address: "127.0.0.1:8769" },
        hubServer: { authenticationByRequest: { timeout: "5m" } },
        grpcBridge: { address: "127.0.0.1:10564" },
      },
      "/srv/corral",
    );
    assert.equal(config.nodeName, "My Controller");
    assert.equal(config.clusterAddress, "127.0.0.1:8769");
    assert.equal(config.bridgeAddress, "127.0.0.1:10564");
    assert.equal(config.authenticationByRequestTimeoutMs, 300_000);
    assert.equal(config.dataDir, "/srv/corral/.corral/controller");
    assert.deepEqual(config.store, { kind: "sqlite", path: "/srv/corral/.corral/controller/corral.db" });
  });

  it("reads the controller node's machine options, with defaults, and names a bad one", () => {
    const plain = resolveControllerConfig({}, "/x");
    assert.deepEqual(plain.ownNode, { resourcesRefreshMs: 60_000, nvidiaSmi: "nvidia-smi" });
    const set = resolveControllerConfig(
      { node: { resourcesRefresh: "30s", nvidiaSmi: "/opt/nvidia/bin/nvidia-smi", maxLayers: 0 } },
      "/x",
    );
    assert.deepEqual(set.ownNode, {
      resourcesRefreshMs: 30_000,
      nvidiaSmi: "/opt/nvidia/bin/nvidia-smi",
      maxLayers: 0,
    });
    rejectsWith({ node: { maxLayers: -1 } }, /node\.maxLayers/);
    rejectsWith({ node: { resourcesRefresh: "soon" } }, /node\.resourcesRefresh/);
  });

  it("reads store.etcd, and names the key of a bad one", () => {
    const config = resolveControllerConfig(
      {
        store: { etcd: { endpoints: ["http://127.0.0.1:2379"], leaseTtl: "2s" } },
        ca: { keyFile: "ca.key" },
      },
      "/x",
    );
    assert.equal(config.ca?.keyFile, "/x/ca.key");
    assert.deepEqual(config.store, {
      kind: "etcd",
      endpoints: ["http://127.0.0.1:2379"],
      prefix: "/corral",
      leaseTtlSeconds: 2,
      lastSeenFlushMs: 1_000,
    });
    // Batched heartbeats must arrive well within the suspect slack ((3 − 1 − 0.1) × 5 s by default).
    rejectsWith(
      { store: { etcd: { endpoints: ["http://a:1"], lastSeenFlush: "5s" } }, ca: { keyFile: "/k" } },
      /store\.etcd\.lastSeenFlush: must be above 0 and at most half the suspect slack/,
    );
    rejectsWith({ store: { etcd: { endpoints: [] } } }, /store\.etcd\.endpoints: must name at least one/);
    rejectsWith({ store: { etcd: { endpoints: ["ftp://x"] } } }, /store\.etcd\.endpoints\.0:/);
    rejectsWith({ store: { etcd: { endpoints: ["http://a:1"], prefix: "corral" } } }, /store\.etcd\.prefix:/);
    rejectsWith(
      { store: { etcd: { endpoints: ["http://a:1"], username: "root" } } },
      /store\.etcd\.username: is not a known key/,
    );
    rejectsWith(
      { store: { sqlite: {}, etcd: { endpoints: ["http://a:1"] } } },
      /store: name either sqlite or etcd/,
    );
  });

  it("reads store.etcd.tls with paths relative to the file, and names the key of a bad one", () => {
    const etcd = (more: Record<string, unknown>) => ({
      store: { etcd: { endpoints: ["https://10.0.0.5:2379", "https://10.0.0.6:2379"], ...more } },
      ca: { keyFile: "/k" },
    });
    const config = resolveControllerConfig(
      etcd({ tls: { caFile: "etcd/ca.crt", certFile: "/etc/corral/etcd.crt", keyFile: "etcd/client.key" } }),
      "/x",
    );
    assert.deepEqual(config.store.kind === "etcd" ? config.store.tls : undefined, {
      caFile: "/x/etcd/ca.crt",
      certFile: "/etc/corral/etcd.crt",
      keyFile: "/x/etcd/client.key",
    });
    const caOnly = resolveControllerConfig(etcd({ tls: { caFile: "ca.crt" } }), "/x");
    assert.deepEqual(caOnly.store.kind === "etcd" ? caOnly.store.tls : undefined, { caFile: "/x/ca.crt" });
    // Without tls, https:// endpoints are checked against the system's trusted roots.
    assert.equal((resolveControllerConfig(etcd({}), "/x").store as { tls?: unknown }).tls, undefined);

    rejectsWith(
      etcd({ tls: { caFile: "ca.crt", certFile: "c.crt" } }),
      /store\.etcd\.tls\.keyFile: is required with certFile/,
    );
    rejectsWith(
      etcd({ tls: { caFile: "ca.crt", keyFile: "c.key" } }),
      /store\.etcd\.tls\.certFile: is required with keyFile/,
    );
    rejectsWith(etcd({ tls: { certFile: "c.crt", keyFile: "c.key" } }), /store\.etcd\.tls\.caFile:/);
    rejectsWith(etcd({ tls: { caFile: "" } }), /store\.etcd\.tls\.caFile:/);
    rejectsWith(
      etcd({ tls: { caFile: "ca.crt", crlFile: "x" } }),
      /store\.etcd\.tls\.crlFile: is not a known key/,
    );
    rejectsWith(
      {
        store: { etcd: { endpoints: ["https://a:1", "http://b:1"], tls: { caFile: "ca.crt" } } },
        ca: { keyFile: "/k" },
      },
      /store\.etcd\.endpoints: must all be https:\/\/ URLs with store\.etcd\.tls/,
    );
    rejectsWith(
      { store: { etcd: { endpoints: ["https://a:1", "http://b:1"] } }, ca: { keyFile: "/k" } },
      /store\.etcd\.endpoints: must be all http:\/\/ or all https:\/\//,
    );
  });

  it("has defaults for everything", () => {
    const config = resolveControllerConfig({}, "/x");
    assert.equal(config.clusterAddress, "0.0.0.0:7443");
    assert.equal(config.bridgeAddress, "127.0.0.1:8080");
    assert.equal(config.webAddress, "127.0.0.1:7080");
    assert.equal(config.authenticationByRequestTimeoutMs, 300_000);
  });

  it("names an unknown key, even a nested one", () => {
    rejectsWith({ grpcbridge: { address: "127.0.0.1:1" } }, /grpcbridge: is not a known key/);
    rejectsWith(
      { hubServer: { authenticationByRequest: { timout: "5m" } } },
      /hubServer\.authenticationByRequest\.timout/,
    );
  });

  it("names a bad duration and a bad address", () => {
    rejectsWith(
      { hubServer: { authenticationByRequest: { timeout: "five minutes" } } },
      /timeout.*not a duration/,
    );
    rejectsWith({ http: { address: "localhost" } }, /http\.address.*not an address/);
    rejectsWith({ web: { address: "127.0.0.1:99999" } }, /web\.address/);
    rejectsWith({ http: { advertiseAddress: "10.0.0.1" } }, /http\.advertiseAddress.*not an address/);
  });

  it("reads http.advertiseAddress", () => {
    const config = resolveControllerConfig(
      { http: { address: "0.0.0.0:7443", advertiseAddress: "10.0.0.1:7443" } },
      "/tmp",
    );
    assert.equal(config.advertiseAddress, "10.0.0.1:7443");
    assert.equal(resolveControllerConfig({}, "/tmp").advertiseAddress, undefined);
  });

  it("refuses a plaintext bridge beyond loopback unless told --insecure", () => {
    rejectsWith({ grpcBridge: { address: "0.0.0.0:8080" } }, /not a loopback address.*--insecure/);
    const config = resolveControllerConfig({ grpcBridge: { address: "0.0.0.0:8080" } }, "/x", {
      insecure: true,
    });
    assert.equal(config.bridgeAddress, "0.0.0.0:8080");
  });
});
