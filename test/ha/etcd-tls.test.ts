import assert from "node:assert/strict";
import { webcrypto } from "node:crypto";
import { mkdir, mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { CorralError } from "../../src/base/errors.ts";
import { loadControllerConfig, readEtcdTls } from "../../src/controller/config.ts";
import { Controller } from "../../src/controller/controller.ts";
import { ClusterService } from "../../src/gen/corral/v1/cluster_pb.ts";
import { createLogger } from "../../src/observability/logger.ts";
import { writeSealingKey } from "../../src/security/ca-key-file.ts";
import { CaSigner } from "../../src/security/ca-signer.ts";
import { privateKeyToPem } from "../../src/security/pem.ts";
import { generateKeyPair, type X509Key } from "../../src/security/x509-setup.ts";
import type { EtcdTls } from "../../src/store/etcd/etcd-client.ts";
import { EtcdStore } from "../../src/store/etcd/etcd-store.ts";
import type { StoreEvent } from "../../src/store/types.ts";
import { plaintextClient } from "../helpers/clients.ts";
import { etcdMissing, startTestEtcd, type TestEtcd } from "../helpers/etcd.ts";

const missing = etcdMissing();
const hour = 3_600_000;
/** A TLS failure must surface within a few unary deadlines, never hang. */
const failWithinMs = 15_000;

/** A certificate and key signed by `ca`, as PEM. */
async function issue(
  ca: CaSigner,
  commonName: string,
  usage: "server" | "client" | "both",
): Promise<{ cert: string; key: string }> {
  const keys = await generateKeyPair();
  const certificate = await ca.sign(keys.publicKey as unknown as X509Key, {
    commonName,
    dnsNames: ["localhost"],
    ipAddresses: usage === "client" ? [] : ["127.0.0.1"],
    validityMs: hour,
    usage,
  });
  return { cert: certificate.toString("pem"), key: await privateKeyToPem(webcrypto.subtle, keys.privateKey) };
}

/** Resolves with the error `work` rejects with, and how long it took. */
async function failure(work: () => Promise<unknown>): Promise<{ error: unknown; ms: number }> {
  const started = Date.now();
  try {
    await work();
  } catch (error) {
    return { error, ms: Date.now() - started };
  }
  throw new Error("expected a failure, but it succeeded");
}

describe("etcd over TLS", { skip: missing }, () => {
  let dir: string;
  let etcd: TestEtcd;
  /** The files as a controller config names them, relative to `dir`. */
  const files = {
    ca: "certs/ca.crt",
    cert: "certs/client.crt",
    key: "certs/client.key",
    wrongCa: "certs/wrong-ca.crt",
  };
  let good: EtcdTls;

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), "corral-etcd-tls-"));
    await mkdir(join(dir, "certs"));
    await writeSealingKey(join(dir, "ca.key"));
    const ca = (await CaSigner.create("etcd-test")).signer;
    const wrongCa = (await CaSigner.create("someone-else")).signer;
    const server = await issue(ca, "etcd", "both");
    const client = await issue(ca, "ctl-tls", "client");
    const write = (name: string, text: string) => writeFile(join(dir, name), text, { mode: 0o600 });
    await write(files.ca, ca.certificatePem);
    await write(files.wrongCa, wrongCa.certificatePem);
    await write(files.cert, client.cert);
    await write(files.key, client.key);
    await write("certs/server.crt", server.cert);
    await write("certs/server.key", server.key);
    good = {
      ca: Buffer.from(ca.certificatePem),
      cert: Buffer.from(client.cert),
      key: Buffer.from(client.key),
    };
    etcd = await startTestEtcd({
      tls: {
        certFile: join(dir, "certs/server.crt"),
        keyFile: join(dir, "certs/server.key"),
        trustedCaFile: join(dir, files.ca),
        clientCertAuth: true,
        probe: good,
      },
    });
  });
  after(async () => {
    await etcd?.stop();
    if (dir !== undefined) await rm(dir, { recursive: true, force: true });
  });

  it("serves a store over TLS with a client certificate: put, get and watch", async () => {
    assert.match(etcd.endpoint, /^https:\/\/127\.0\.0\.1:\d+$/);
    await using store = await EtcdStore.open({ endpoints: [etcd.endpoint], prefix: "/tls-store", tls: good });
    const written = await store.commit({ ops: [{ type: "put", key: "/a", value: "1" }] });
    assert.equal((await store.get("/a"))?.value, "1");

    const stop = new AbortController();
    const seen: StoreEvent[] = [];
    const watching = (async () => {
      for await (const batch of store.watch(written.revision, { signal: stop.signal })) {
        seen.push(...batch);
        if (seen.some((event) => event.key === "/b")) break;
      }
    })();
    await store.commit({ ops: [{ type: "put", key: "/b", value: "2" }] });
    await Promise.race([
      watching,
      new Promise((_, reject) =>
        setTimeout(() => reject(new Error("no watch event in 10 s")), 10_000).unref(),
      ),
    ]);
    stop.abort();
    assert.deepEqual(
      seen.map((event) => [event.type, event.key, event.value]),
      [
        ["put", "/a", "1"],
        ["put", "/b", "2"],
      ],
    );
  });

  it("starts a controller from a YAML file with store.etcd.tls, and status finds etcd healthy", async () => {
    const configFile = join(dir, "controller.yaml");
    await writeFile(
      configFile,
      [
        "node: { name: ctl-tls }",
        "http: { address: 127.0.0.1:0 }",
        "grpcBridge: { address: 127.0.0.1:0 }",
        "web: { address: 127.0.0.1:0 }",
        "dataDir: data",
        "shutdownGrace: 1s",
        "store:",
        "  etcd:",
        `    endpoints: [${etcd.endpoint}]`,
        "    prefix: /corral-tls",
        "    leaseTtl: 2s",
        "    tls:",
        `      caFile: ${files.ca}`,
        `      certFile: ${files.cert}`,
        `      keyFile: ${files.key}`,
        "ca: { keyFile: ca.key }",
        "",
      ].join("\n"),
    );
    const config = await loadControllerConfig(configFile);
    assert.deepEqual(config.store.kind === "etcd" ? config.store.tls : undefined, {
      caFile: join(dir, files.ca),
      certFile: join(dir, files.cert),
      keyFile: join(dir, files.key),
    });
    await using controller = await Controller.start(
      config,
      createLogger({ level: process.env.CORRAL_TEST_LOG ?? "silent" }),
    );
    const port = Number(controller.addresses.bridge.slice(controller.addresses.bridge.lastIndexOf(":") + 1));
    const client = plaintextClient(ClusterService, port);
    // Leader election has its own etcd client: leading proves that one speaks TLS too.
    const deadline = Date.now() + 10_000;
    let status = await client.getClusterStatus({});
    while (!status.isLeader && Date.now() < deadline) {
      await new Promise((resolve) => setTimeout(resolve, 50));
      status = await client.getClusterStatus({});
    }
    assert.equal(status.isLeader, true, "the only controller leads");
    assert.equal(status.leader, "ctl-tls");
    assert.match(status.store, /^etcd \(https:\/\/127\.0\.0\.1:/);
    assert.equal(status.storeHealth?.healthy, true, status.storeHealth?.message);
    assert.match(status.storeHealth?.message ?? "", /^etcd 3\./);
    assert.ok((status.storeHealth?.revision ?? 0n) > 0n);
  });

  /** Opening the store with `tls` fails soon, with UNAVAILABLE naming the certificate problem. */
  const refused = async (tls: EtcdTls) => {
    const { error, ms } = await failure(async () => {
      const store = await EtcdStore.open({ endpoints: [etcd.endpoint], tls, requestTimeoutMs: 3_000 });
      await store.close();
    });
    assert.ok(error instanceof CorralError, String(error));
    assert.equal(error.code, "UNAVAILABLE", error.message);
    assert.match(error.message, /certificate|TLS|SSL|handshake/i);
    assert.ok(ms < failWithinMs, `took ${ms} ms`);
  };

  it("fails clearly and quickly when etcd's certificate is not signed by the trusted CA", async () => {
    await refused({ ...good, ca: await readFile(join(dir, files.wrongCa)) });
  });

  it("fails clearly when etcd requires a client certificate and none is given", async () => {
    await refused({ ca: good.ca });
  });

  it("names the key and path of a TLS file it cannot read, before connecting", async () => {
    const { error } = await failure(() =>
      readEtcdTls({
        caFile: join(dir, "certs/nope.crt"),
        certFile: join(dir, files.cert),
        keyFile: join(dir, files.key),
      }),
    );
    assert.ok(error instanceof CorralError, String(error));
    assert.equal(error.code, "NOT_FOUND");
    assert.match(error.message, /store\.etcd\.tls\.caFile: cannot read .*certs\/nope\.crt/);

    const notPem = await failure(() => readEtcdTls({ caFile: join(dir, "ca.key") }));
    assert.ok(notPem.error instanceof CorralError);
    assert.equal(notPem.error.code, "FAILED_PRECONDITION");
    assert.match(notPem.error.message, /store\.etcd\.tls\.caFile: .* holds no PEM certificate/);

    // A key that is not the certificate's.
    const mismatched = await failure(() =>
      readEtcdTls({
        caFile: join(dir, files.ca),
        certFile: join(dir, files.cert),
        keyFile: join(dir, "certs/server.key"),
      }),
    );
    assert.ok(mismatched.error instanceof CorralError);
    assert.equal(mismatched.error.code, "FAILED_PRECONDITION");
    assert.match(mismatched.error.message, /store\.etcd\.tls\.certFile: /);

    // The controller stops at the file: no etcd at this endpoint, so a connection attempt would say UNAVAILABLE.
    const config = await loadControllerConfigFrom(dir, {
      endpoints: ["https://127.0.0.1:9"],
      tls: { caFile: "certs/missing-ca.crt" },
    });
    const started = await failure(() => Controller.start(config, createLogger({ level: "silent" })));
    assert.ok(started.error instanceof CorralError, String(started.error));
    assert.equal(started.error.code, "NOT_FOUND");
    assert.match(started.error.message, /store\.etcd\.tls\.caFile: cannot read .*certs\/missing-ca\.crt/);
  });
});

async function loadControllerConfigFrom(dir: string, etcd: Record<string, unknown>) {
  const file = join(dir, "bad-tls.yaml");
  await writeFile(
    file,
    JSON.stringify({
      http: { address: "127.0.0.1:0" },
      grpcBridge: { address: "127.0.0.1:0" },
      web: { address: "127.0.0.1:0" },
      dataDir: "bad-data",
      store: { etcd },
      ca: { keyFile: "ca.key" },
    }),
  );
  return loadControllerConfig(file);
}
