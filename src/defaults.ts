/**
 * Every default of corral, in one place. Durations are human strings, parsed where they are used,
 * so that this file reads like the documentation of the defaults it is.
 */
export const defaults = {
  controller: {
    nodeName: "My Controller",
    /** The TLS cluster listener (NanoPing's `http.address`). */
    clusterAddress: "0.0.0.0:7443",
    /** Plaintext gRPC for local tools (`grpcurl -plaintext`); loopback only unless --insecure. */
    bridgeAddress: "127.0.0.1:8080",
    webAddress: "127.0.0.1:7080",
    dataDir: ".corral/controller",
    authenticationByRequestTimeout: "5m",
    /** How long SIGINT/SIGTERM waits for in-flight calls before cutting them off. */
    shutdownGrace: "10s",
  },
  rpc: {
    maxReceiveMessageBytes: 4 * 1024 * 1024,
    maxSendMessageBytes: 16 * 1024 * 1024,
    maxConcurrentStreamsPerConnection: 256,
    keepaliveTime: "30s",
    keepaliveTimeout: "10s",
    /** Clients may ping this often without data in flight before being told to back off. */
    keepaliveMinPingInterval: "10s",
  },
  feed: {
    /** Events a watcher may fall behind before it is cut off with RESOURCE_EXHAUSTED. */
    maxLag: 10_000,
  },
  demo: {
    dataDir: ".corral/demo",
    agents: 3,
    agentLocalApiFirstPort: 10432,
  },
} as const;
